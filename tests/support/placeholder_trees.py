"""Placeholder dataset trees in the official release layouts, from data_manifests/examples.

The example split files name a handful of clips; each clip gets an empty folder (frame
folders are where DFEW's face crops, FERV39k and MAFW ship), which is all the manifest stage
checks. Used by the dry runs of the worked overlays and the paper presets.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "data_manifests" / "examples"


def placeholder_dfew(root: Path, sets: tuple[int, ...] = (1, 2, 3, 4, 5)) -> dict[str, Any]:
    """DFEW's release layout: split csvs (only ``sets``) and a zero-padded folder per clip."""
    split = root / "DFEW" / "EmoLabel_DataSplit"
    crops = root / "DFEW" / "Clip" / "clip_224x224"
    for csv in sorted((EXAMPLES / "dfew" / "EmoLabel_DataSplit").glob("*/set_*.csv")):
        if int(csv.stem.split("_")[1]) not in sets:
            continue
        dest = split / csv.parent.name / csv.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(csv, dest)
        for line in csv.read_text().splitlines()[1:]:
            (crops / line.split(",")[0].strip().zfill(5)).mkdir(parents=True, exist_ok=True)
    return {"root": str(crops), "split_files": [str(split)]}


def placeholder_mafw(root: Path) -> dict[str, Any]:
    """MAFW's layout with an empty face-crop folder per clip of the example split files."""
    split = root / "MAFW" / "Train_Test_Set" / "single" / "no_caption"
    shutil.copytree(EXAMPLES / "mafw" / "single" / "no_caption", split)
    faces = root / "MAFW" / "data" / "faces"
    for txt in split.glob("*/*.txt"):
        for line in txt.read_text().splitlines():
            if line.strip():
                (faces / Path(line.split()[0]).stem).mkdir(parents=True, exist_ok=True)
    return {"root": str(faces), "split_files": [str(split)]}


def placeholder_ferv39k(root: Path) -> dict[str, Any]:
    """FERV39k's layout: the All_scenes setup csvs and a folder per clip."""
    setups = root / "FERV39k" / "4_setups" / "All_scenes"
    shutil.copytree(EXAMPLES / "ferv39k" / "4_setups" / "All_scenes", setups)
    clips = root / "FERV39k" / "2_ClipsforFaceCrop"
    for csv in setups.glob("*.csv"):
        for line in csv.read_text().splitlines():
            if line.strip():
                (clips / line.split()[0]).mkdir(parents=True, exist_ok=True)
    return {"root": str(clips),
            "split_files": [str(setups / "train_All.csv"), str(setups / "test_All.csv")]}


PLACEHOLDERS = {"dfew": placeholder_dfew, "mafw": placeholder_mafw, "ferv39k": placeholder_ferv39k}
