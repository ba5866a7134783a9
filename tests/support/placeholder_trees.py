"""Placeholder dataset trees in the official release layouts, from data_manifests/examples.

The example split files name a handful of clips; each clip gets an empty folder (frame
folders are where DFEW's face crops, FERV39k and MAFW ship), or for a static dataset an empty
image file, which is all the manifest stage checks. Used by the dry runs of the worked
overlays and the paper presets.
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


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def placeholder_rafdb(root: Path) -> dict[str, Any]:
    """RAF-DB basic: EmoLabel/list_patition_label.txt and an empty aligned face per image."""
    basic = root / "RAF-DB" / "basic"
    label = basic / "EmoLabel" / "list_patition_label.txt"
    label.parent.mkdir(parents=True)
    shutil.copy2(EXAMPLES / "rafdb" / "basic" / "EmoLabel" / label.name, label)
    for line in label.read_text().splitlines():
        if line.strip():
            stem = line.split()[0].rsplit(".", 1)[0]
            _touch(basic / "Image" / "aligned" / f"{stem}_aligned.jpg")
    return {"root": str(basic), "split_files": [str(label)]}


def placeholder_affectnet(root: Path) -> dict[str, Any]:
    """AffectNet: Manually_Annotated_file_lists/{training,validation}.csv and an empty image
    per row under Manually_Annotated/Manually_Annotated_Images/."""
    lists = root / "AffectNet" / "Manually_Annotated_file_lists"
    shutil.copytree(EXAMPLES / "affectnet" / "Manually_Annotated_file_lists", lists)
    images = root / "AffectNet" / "Manually_Annotated" / "Manually_Annotated_Images"
    for csv in lists.glob("*.csv"):
        for line in csv.read_text().splitlines()[1:]:
            if line.strip():
                _touch(images / line.split(",")[0])
    return {"root": str(images),
            "split_files": [str(lists / "training.csv"), str(lists / "validation.csv")]}


def placeholder_ferplus(root: Path) -> dict[str, Any]:
    """FERPlus: fer2013new.csv and an empty PNG per named image in FER2013{Train,Valid,Test}/."""
    base = root / "FERPlus"
    base.mkdir(parents=True)
    label = base / "fer2013new.csv"
    shutil.copy2(EXAMPLES / "ferplus" / label.name, label)
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
    for line in label.read_text().splitlines()[1:]:
        usage, name = line.split(",")[:2]
        if name:
            _touch(base / folders[usage] / name)
    return {"root": str(base), "split_files": [str(label)]}


PLACEHOLDERS = {"dfew": placeholder_dfew, "mafw": placeholder_mafw, "ferv39k": placeholder_ferv39k,
                "rafdb": placeholder_rafdb, "affectnet": placeholder_affectnet,
                "ferplus": placeholder_ferplus}
