"""Mutation score of the modules whose numbers the pipeline's results rest on (`make mutation`).

Every ``[module NAME]`` section of ``benchmarks/mutation.cfg`` names source files, the fast
tests that reach them and, optionally, which of the files' mutants count (a module that is part
of a file). Each selected module gets a mutmut run of its own, in a scratch copy of the project
(``benchmarks/out/mutation/NAME/``, removed afterwards unless ``--keep``), so no ``mutants/``
folder lands in the repository. Results are merged into ``benchmarks/results/mutation.json``
(one record per module, so modules can be run in pieces) and ``benchmarks/results/mutation.md``
is rewritten from all records: killed / survived / total per module, and every survivor either
explained as equivalent (:data:`EQUIVALENT`) or marked as needing a test.

mutmut is not a dev dependency: the make target installs it into the project venv.

    python benchmarks/mutation.py                             # every module
    python benchmarks/mutation.py --modules dfer.model        # dfer.model.* only
    python benchmarks/mutation.py --modules dfer.video.crop --baseline   # store as "before"
    python benchmarks/mutation.py --modules dfer.model.vision --baseline --sample 120 \\
        --tests-rev 948f741 --tests tests/test_model.py      # before: a sample, old tests
    python benchmarks/mutation.py --modules dfer.video.crop --keep   # keep the scratch copy
    python benchmarks/mutation.py --modules dfer.video.crop --rerun  # survivors of the kept
                                                              # copy, against today's tests
    python benchmarks/mutation.py --list                      # the modules and their state
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import fnmatch
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "mutation.cfg"
WORK = REPO / "benchmarks" / "out" / "mutation"
RESULT = REPO / "benchmarks" / "results" / "mutation.md"
RECORDS = REPO / "benchmarks" / "results" / "mutation.json"
#: Copied into the scratch copy besides src/ and tests/ (mutation.cfg's also_copy must name the
#: same, for mutmut to copy them on into its mutants/ folder, where the tests run).
COPIED = ("pyproject.toml", "data_manifests", "docs", "config", "envs", "workflow", "Snakefile",
          "README.md")

#: mutmut exit codes -> outcome (as mutmut.stats.status_by_exit_code; anything else: suspicious).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          35: "suspicious", 36: "timeout", 37: "caught by type check", -24: "timeout",
          24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
          None: "not checked"}
#: Outcomes that count as detected: the tests (or the time limit) caught the mutant.
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}

# ------------------------------------------------------------------------ equivalent mutants
_NEWLINE = ("equivalent: reading with newline='' or None splits lines at the same \\n, \\r, "
            "\\r\\n, and each line is stripped, so texts and line numbers are the same")
_CODEC = "equivalent: Python codec names are case-insensitive"
_RSPLIT = ("equivalent: the last element of rsplit('/') is the same whatever the maxsplit (>= 1)")
_STRICT = ("equivalent: the confusion matrix is built with len(labels) classes, so the zipped "
           "sequences always have equal length and strict= never fires")
_FLOAT64 = "equivalent: an array of Python floats is float64 without the dtype"
_ERRSTATE = ("equivalent: the divisor is np.maximum(..., 1) >= 1, so no division by zero or "
             "invalid value can occur and np.errstate changes nothing")
_MPL_CASE = "equivalent: matplotlib lower-cases backend and format names"
_NAN = "equivalent: float('NAN') is float('nan')"
_SEGMENTS = ("equivalent: jittered_indices draws only when wanted < available, so every segment "
             "has edges[k + 1] >= edges[k] + 1 and np.maximum(edges[1:], x) is edges[1:] for any "
             "x <= edges[:-1] + 1")
_FP32 = ("equivalent: dfer builds the backbone in float32 (build_clip passes no precision), so "
         "get_cast_dtype() is float32 and .to(cast) of float32 tensors changes nothing")
_CLS_BROADCAST = ("equivalent: the last block's CLS-only shortcut: more query rows than the one "
                  "CLS row broadcast against it, and CLS pooling reads row 0, which is the same "
                  "(only the fallback path for non-plain attention, or the output's extra rows)")
_VIT_ATTRS = ("equivalent: check_supported admits open_clip VisionTransformers only, which always "
              "have attn_pool and pool_type, so getattr's default is never used")
_EXPAND = ("equivalent: expand() of the [1, D] (or [1, 1, D]) class embedding to (B, -1 or 1, D) "
           "gives the same [B, 1, D] tensor")
_SAME_SEGMENTS = ("equivalent: outs is built from segs one to one, so the zipped sequences always "
                  "have equal length and strict= never fires")
_CHECKPOINT = ("equivalent: activation checkpointing changes memory and time, not values or "
               "gradients (tests/test_model_values.py runs both ways); a different default only "
               "matters to callers that pass none, and FineCLIPER always passes the config's")
_TOKEN_COUNT = ("equivalent (unreachable): open_clip's fixed positional embedding makes _embeds "
                "reject a stream of another image size before this check can see it")
_LAST_DIM = "equivalent: on 2-d [B, C] / [B, E] tensors dim 1, +1 and -1 are the same axis"
_ONE_DEVICE = ("not testable here (CPU only): the device in a cache key or a .to() matters once "
               "the model moves to another device (CUDA); on one device it changes nothing")
_FALSY = "equivalent: None is falsy where the flag is tested, as False is"
_BROADCAST = ("equivalent: a [3, 1, 1] mean / std broadcasts against [N, 3, H, W] pixels as the "
              "[1, 3, 1, 1] one does")
_SQUARE = ("equivalent: dfer resizes every input to S x S, and the towers it accepts have square "
           "image sizes, so image_size[0] == image_size[1]")
_SET_LABELS = "equivalent: __init__ calls set_labels right after, which sets the labels"
_ADAPTER_SET = ("equivalent: adapter_set is only asked for enabled levels; an enabled level is "
                "in vision_adapters (returned before this test), or a middle level when 'mid' is")
_FROZEN_UNUSED = ("equivalent: only decides whether the frozen (unadapted) descriptor features are "
                  "computed when some adapter is not inner; when computed needlessly they are "
                  "not used, and where they are used (output / no adapters) the condition holds "
                  "either way, since all three branches share one text_adapter mode")
_ONE_EACH = ("equivalent: the zipped sequences are built one per level (or per stream) from the "
             "same list, so they always have equal length and strict= never fires")
_CLIP_ATTRS = ("equivalent: open_clip's CLIP always has attn_mask, text_pool_type and text_eos_id "
               "(check_text_supported admits no other text tower), so getattr's default is never used")
_CAT_ONE = "equivalent: torch.cat of a single tensor is a copy of it"
_ALIGN = ("equivalent: F.interpolate's align_corners defaults to None, which bilinear treats as "
          "False")
_WEIGHTS = ("equivalent: the attention output ([0]) is the same; need_weights only also returns "
            "the averaged attention weights (and rules out the fused kernel: float rounding)")
_INTERP = ("equivalent: frame numbers are small integers and the centres / sides Python floats, "
           "and np.interp computes in float64 whatever the dtype of its inputs")
_ARANGE = "equivalent: np.arange of Python ints is int64 on the 64-bit platforms dfer supports"
_CHECKED_LENGTHS = ("equivalent: the number of answers was compared with the number of clips "
                    "just above (RuntimeError otherwise), so strict= never fires")
_ALL_COLUMNS = ("equivalent: reading every column of the index instead of clip_id alone gives the "
                "same clip_id column (only more I/O)")
_SPLIT_FIRST = "equivalent: the first element of split('.') is the same whatever the maxsplit (>= 1)"
_BLEND64 = ("equivalent: the blend computed in float64 instead of float32 rounds to the same uint8 "
            "for every (max channel, channel <= max, face value) in 0..255, checked exhaustively "
            "(16.7 M cases)")
_BLEND_RANGE = ("equivalent: marks + face * (1 - max(marks) / 255) lies in [0, 255] for uint8 "
                "inputs (a channel is at most the max), so the clip bound is never reached")
_PAIRS = ("equivalent: every pair() call lists the same number of points on both sides, so "
          "strict= never fires")
_STD_PAIR = ("equivalent: a summary column and its _std column come from the same frame, so "
             "the zipped sequences always have equal length and strict= never fires")
_INDEX_NONE = "equivalent: pandas reads index=None as no index, like index=False"
_BY_NAME = ("equivalent: the rows are read by column name (row.run, ...), which the extra Index "
            "field does not change")
_NO_NAN_SHOWN = ("equivalent: no cell of this displayed table can be NaN (every column that can "
                 "be missing was turned into text first, the others always have values), so "
                 "na_rep is never used")
_ESCAPE_DEFAULT = "equivalent: DataFrame.to_html escapes by default (escape=True)"
_CONVEX = ("equivalent: antialiased bilinear weights are non-negative and sum to 1, so the "
           "resized values of uint8 pixels stay in [0, 255] and the clamp never binds")
_TORCH_LONG = "equivalent: torch.tensor of Python ints is int64 (torch.long)"
_PARQUET_DEFAULT = "equivalent: shards_in's suffix defaults to '.parquet' (PARQUET)"
_SQUARE_CROP = ("equivalent: decoded frames are square crops [T, S, S, 3] (the decode stage "
                "writes size x size), so shape[1] == shape[2]")
_MID_PAIRS = ("equivalent: the faces and the landmark images are both made from mid_idx, so the "
              "zipped sequences always have equal length and strict= never fires")
_HALF = ("equivalent: differs only when Generator.random() returns exactly 0.5 (probability "
         "2**-53 per draw)")
_FLIP_PASSED = "equivalent: _load's one caller always passes flip"
_RENDERERS_UNUSED = ("equivalent: prepare_clip uses the renderers only for points or maps, which "
                     "a model that reads neither level does not load")
_BOOL_KEEP = "equivalent: keep is already a boolean Series, so the array is boolean either way"
_STR_IDS = ("equivalent: the frames index stores clip_id as text (the manifest readers make every "
            "id a str), so astype(str) changes nothing here")
_NONE_EQ_1 = ("equivalent: without the column, np.asarray(None) == 1 is False, the value the "
              "else branch gives")
_MERGE_ON = ("equivalent: the index and the points / captions frame share only the clip_id "
             "column, which merge joins on by default")
_MERGE_HOW = "equivalent: DataFrame.merge's how defaults to 'inner'"
_MERGE_SORT = ("equivalent: the clip table is sorted by clip_id (stable) right after the shards "
               "are joined, whatever order merge left the rows in")
_LOST_PAIRS = ("equivalent: stage and error_type are two columns of one frame, so the zipped "
               "sequences always have equal length and strict= never fires")
_KEYS_OBJECT = ("equivalent: a Series of str is object dtype anyway, and an empty one counts "
                "nothing either way")
_POLICY_NONE = ("equivalent: with no policy the lookup misses either way ('' and 'XXXX' are not "
                "keys) and adds nothing")
_CONCAT_INDEX = ("equivalent: the rows are sorted and re-indexed (reset_index(drop=True)) right "
                 "after, whatever index the concatenation gave them")
_UNIQUE_SORT = ("equivalent: clip ids are unique, so every sort algorithm gives the same order "
                "(and pandas ignores a kind it does not know for a single column)")
_OPTIONAL_MODE = ("equivalent: _shard_clips only tells 'unused' and 'required' apart; any other "
                  "mode is the optional one")
_EMPTY_SUM = "equivalent: the sum of an empty one_frame column is 0, the else branch's value"
_FOLDS_INT64 = ("equivalent: the lost rows come from the listed clips, whose test_fold is already "
                "int64 (listed_clips casts it)")
_SHARD_WIDTH = ("equivalent for datasets of at most 1000 shards (every test and benchmark): "
                "shard names are padded to MIN_DIGITS (3) with or without num_shards")
_ORIENT_CASE = "equivalent: DataFrame.to_dict lower-cases orient ('RECORDS' is 'records')"
_SHUFFLE_NONE = "equivalent: DataLoader reads shuffle=None as False (a SequentialSampler)"
_LOADER_DEFAULT = "equivalent: DataLoader's shuffle defaults to False"
_EMPTY_PREDS = ("equivalent: the predictions of a split with nothing to score are empty; an empty "
                "array of another dtype, or None for the empty lists, gives the same empty table "
                "and metrics")
_BOOL_NONE = "equivalent: bool(None) is bool(False)"
_FOLD_PAIRS = ("equivalent: counts is built from folds one to one, so the zipped sequences always "
               "have equal length and strict= never fires")
_ONE_PROCESS = "equivalent: lightning_devices' process count defaults to 1, the count passed"
_CPU_PRECISION = ("not testable here (CPU only): Lightning's default precision is 32-true, which "
                  "auto_precision gives on the CPU; on a GPU it would give bf16 / 16 mixed")
_CPU_ACCEL = ("not testable here (CPU only): Lightning's accelerator 'auto' is the CPU on this "
              "machine, the accelerator passed; on a GPU machine it matters")
_PREDICT_NO_CKPT = ("equivalent: trainer.predict never writes checkpoints, so "
                    "enable_checkpointing changes nothing")
_DISPLAY = ("equivalent: the model summary and the progress bar are display only (stderr), "
            "not what is predicted")
_NO_FILES = ("equivalent: with logger=False and no checkpointing, predict writes nothing under "
             "default_root_dir (tests/test_evaluate_values.py checks that nothing is written)")
_EMPTY_MAX = ("equivalent: max over the last axis of a [0, C] array is an empty array, which the "
              "float32 cast makes the same as the else branch's")
_EMPTY_SERIES = ("equivalent: a Series of arrays is object dtype, and pandas 2 makes an empty "
                 "Series object dtype too")
_TOLIST = ("equivalent: tolist() gives Python floats either way, and the Parquet schema stores "
           "them as float32")
_MEMORY_ONLY = ("equivalent: only hands Arrow's freed pool memory back to the OS (resident "
                "memory, measured by benchmarks/, not values)")
_RMTREE = ("equivalent: the folder exists when its owner is collected (nothing else removes it), "
           "so rmtree has no error to ignore")
_MORE_COLUMNS = "equivalent: reading every column gives the same columns used (only more I/O)"
_PATH_IN_ERROR = ("equivalent for readable shards: points_array uses the path only to name the "
                  "file in the error about a malformed points column")
_PRIVATE_NAMES = ("equivalent: names of files in the store's private temporary folder, which "
                  "nothing else reads")
_TWO_COLUMNS = ("equivalent: clip_id and caption are two columns of one table, so the zipped "
                "sequences always have equal length and strict= never fires")
_FROMITER_COUNT = "equivalent: np.fromiter's count only pre-allocates; the items are the same"
_PREAD_MODE = ("equivalent: os.pread reads bytes from the descriptor whatever mode the file "
               "object was opened in")
_LOWER_X = ("equivalent: the text is lower-cased first, so the added capital X's match no "
            "character of it")
_CUT_LENGTH = ("equivalent: only the length of a cut suffix is used (word[:-len(cut)]), and the "
               "case change keeps it")
_FIRST_SEP = ("equivalent: the separator before a sentence's first clause is never written "
              "(the sentence starts with the clause's text; only later clauses' separators join)")
_GROUP_KEY = ("equivalent: grouping by the 4 keys gives 4-tuples, so the zipped sequences always "
              "have equal length and strict= never fires")
_ROW_ORDER = ("equivalent: every row dict is built with exactly the summary's columns, in "
              "SUMMARY_COLUMNS order, so the frame has the same columns without naming them")
_NON_EMPTY_MAP = ("equivalent: max(initial=...) only differs from max() on an empty array; "
                  "parsing maps are [S, S] with S >= 1 (and initial=1 is below every bound checked)")
_SS_INDEX = ("equivalent: the index of the concatenated table is never read; every count goes "
             "through column values (nunique, value_counts, sum), and the Series combined with & "
             "are built from the same table, so they share its index, duplicated or not")
_SS_EMPTY_FAILS = ("equivalent: an empty failures frame is only asked its length (clips_failed, "
                   "failure_types and lost_by_class test len(fails) first), so its columns are "
                   "never read")
_G_SAME_LEN = ("equivalent: the zipped sequences come from one table (or from clip_bounds, which "
              "returns starts and stops of equal length), so strict= never fires")
_G_BLOCK = ("equivalent: SHA-256 of a file read in blocks of any positive size (or whole) is the "
            "hash of its bytes")
_G_MULTI_SORT = ("equivalent: pandas applies sort_values' kind only when sorting on a single "
                 "column; on three columns the sort is stable whatever kind says, and ascending "
                 "defaults to True")
_G_BOOL_NONE = "equivalent: bool(None) is bool(False)"
_G_SHARDS_IN = "equivalent: shards_in's default suffix is '.parquet', the value of PARQUET"
_LOCALE = ("not testable here: without the encoding Python uses the locale's, and this machine "
           "(like every Python >= 3.7 in a C / POSIX locale, which it coerces to UTF-8) has only "
           "UTF-8 locales; the explicit utf-8 keeps non-ASCII text right under a latin-1 or "
           "Windows code-page locale")
_G_INT_LIST = "equivalent: np.asarray of a list of Python ints is int64 without the dtype"
_G_ASCII_NONE = "equivalent: json.dumps tests ensure_ascii for truth; None is falsy, as False is"
_G_STAGING = ("equivalent: the staging folder exists whenever the except block runs (made before "
              "the try, renamed away only by its last statement), so rmtree has no error to ignore")
_G_EVERY_LINE = ("equivalent: clip_artifacts yields every wanted clip id (those in no manifest "
                 "last), so every line is overwritten with its card and the initial value is "
                 "never written")
_G_EXACT64 = ("equivalent: the probabilities are float32 (or Python floats, float64 without the "
              "dtype); float32 -> float64 is exact, so the order and the rounded values are the same")
_G_TIES = ("not testable here: numpy's default argsort (introsort, insertion sort below 16 "
           "elements) returns tied probabilities in index order on this machine for every "
           "class count dfer uses (<= 11); kind='stable' guarantees it where numpy's SIMD sort "
           "(AVX-512) is used")
_G_KIND_CASE = "equivalent: numpy reads sort kind names case-insensitively ('STABLE' is 'stable')"
_G_EXT_CASE = "equivalent: cv2.imencode matches the file extension case-insensitively"
_G_CV_U8 = ("equivalent: cv2.imencode converts a float64 / int64 image to 8 bits (values 0..255 "
            "stay as they are); the tile's and the alpha's values are all in 0..255")
_G_INT_COORDS = ("equivalent: the rounded coordinates are whole numbers, so int(x) of the float64 "
                 "array is the same as of the int array")
_G_SATURATE = "equivalent: cv2 saturates colour components to 255, so 256 draws 255"
_G_LINE8 = "equivalent: cv2.circle's lineType defaults to LINE_8"
_G_FILLED = "equivalent: cv2 fills a circle for any negative thickness (-1 and -2 alike)"
_G_PNG9 = "equivalent: cv2 clamps IMWRITE_PNG_COMPRESSION to 0..9, so 10 writes level 9"
_G_MARKER = ("equivalent: the marker is only inserted into the rendered page and split out of it "
             "again, so any marker text that the template does not contain works alike")
_CK_STRICT = ("equivalent: the key sets and shapes were compared just before (an error names any "
              "difference), so load_state_dict's strict check has nothing left to find")
_CK_TO_NONE = ("equivalent: Tensor.to(None) keeps the dtype, and load_state_dict copies each "
               "value into the existing parameter or buffer, which casts it to that one's dtype")
_CK_SPEC = ("equivalent: spec is the method that built the model (load_checkpoint: the same "
            "registry entry that built it; save_checkpoint: spec_of_model of it), which is what "
            "spec_of_model(model) returns when no spec is passed")
_SQUARE_SIMS = ("equivalent: sims is video @ caption.T of the same clips, a square [n, n] matrix, "
                 "so shape[0] and shape[1] are the same")
_BB_WARNINGS = ("equivalent: only which warnings torch.jit.load may print inside the block (all "
                 "instead of FutureWarning alone); the state dict read is the same")
_BB_MAP_CPU = ("not testable here (CPU only): map_location='cpu' matters for an archive saved from "
               "GPU tensors, which loads onto that GPU without it; a CPU-saved archive loads the same")
_W_LOG_ARGS = ("equivalent: logging applies %-formatting only when arguments are given, so "
               "log.warning(text) and log.warning('%s', text) print the same text, % signs included")
_BB_TEXT_CFG = ("equivalent: open_clip.CLIP needs a text_cfg (a model_cfg without one fails to "
                 "build before the context length is read), so .get's default is never used")
_BB_LOAD_NO_TAG = ("equivalent: create_model loads weights only for a pretrained tag; with tag None "
                   "(a weights file, or random init) load_weights=True / None / default change nothing")
_BB_LOAD_TAG = ("not testable here (no network, no open_clip weights): open_clip looks the tag up "
                "whatever load_weights says (an unknown tag fails the same), so the flag only "
                "matters for a real tag whose weights would be downloaded")
_BB_DEEPCOPY = ("equivalent: open_clip.CLIP does not modify the nested dicts of the config it is "
                "given (tests/test_backbone_values.py checks the config after a build), so a "
                "shallow copy protects it as well")
_BB_FORK_CPU = ("not testable here (CPU only): fork_rng(devices=None) also forks the CUDA "
                "generators when CUDA is there; on a CPU-only machine both fork the CPU one alone")
_BB_ST_CPU = "equivalent: safetensors' load_file puts tensors on 'cpu' by default"
_BB_WEIGHTS_ONLY = "equivalent: torch.load's weights_only defaults to True since torch 2.6 (dfer needs newer)"
_BB_ST_SUFFIX = ("equivalent on the pinned torch: torch.load reads a safetensors file itself, so a "
                 "safetensors file sent down the torch.load path gives the same state dict")
_BN_DEFAULTS = ("equivalent: F.batch_norm's training defaults to False and its eps to 1e-5, "
                "which is the eps of the feature norms FineCLIPER builds (BatchNorm1d's default)")
_BN_STATS = ("equivalent: the feature norms track running statistics, so running_mean and "
             "running_var are both set and the assertion holds either way")
_SS_ALL_COLUMNS = ("equivalent: reading every column instead of the named ones adds columns that "
                   "are never looked at (every column the code reads or tests is in the list); "
                   "memory, not values")

#: Survivors that no test can kill: mutant name -> (the mutated line, as a check that the name
#: still means that mutant, and why it is equivalent). A survivor not listed here, or whose
#: mutated line no longer matches, is reported as "needs a test".
EQUIVALENT: dict[str, tuple[str, str]] = {
    "dfer.manifests.readers.x__lines__mutmut_3": ('newline=None', _NEWLINE),
    "dfer.manifests.readers.x__lines__mutmut_6": ('encoding="utf-8-sig", )', _NEWLINE),
    "dfer.manifests.readers.x__lines__mutmut_8": ('"UTF-8-SIG"', _CODEC),
    "dfer.manifests.readers.x_read_table_csv__mutmut_9": ('"UTF-8-SIG"', _CODEC),
    "dfer.manifests.readers.x_numbered_clip_id__mutmut_5": ('rsplit("/", )', _RSPLIT),
    "dfer.manifests.readers.x_numbered_clip_id__mutmut_17": ('rsplit("/", 2)', _RSPLIT),
    "dfer.manifests.readers.x_read_kfold__mutmut_49": (
        'len(fields) >= 2', "equivalent: two fields are already accepted by `len(fields) == 2`"),
    "dfer.core.sharding.x_shard_of__mutmut_11": ('encode("UTF-8")', _CODEC),
    "dfer.core.sharding.x_shard_of__mutmut_17": (
        'int.from_bytes(digest, )',
        "equivalent: int.from_bytes defaults to big-endian since Python 3.11 (the project needs "
        ">= 3.11)"),
    "dfer.train.metrics.x_compute_metrics__mutmut_30": ("strict=None", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_33": ("zip(labels, rec, )", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_34": ("strict=False", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_40": ("strict=None", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_43": ("cm.sum(axis=1), )", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_46": ("strict=False", _STRICT),
    "dfer.train.metrics.x_mean_over_folds__mutmut_16": ("dtype=None", _FLOAT64),
    "dfer.train.metrics.x_mean_over_folds__mutmut_18": ("for m in folds], )", _FLOAT64),
    "dfer.train.metrics.x_per_class_recall__mutmut_4": ("invalid=None", _ERRSTATE),
    "dfer.train.metrics.x_per_class_recall__mutmut_5": ("divide=None", _ERRSTATE),
    "dfer.train.metrics.x_per_class_recall__mutmut_6": ("np.errstate(divide=", _ERRSTATE),
    "dfer.train.metrics.x_per_class_recall__mutmut_7": ('invalid="ignore", )', _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_8": ("invalid=None", _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_9": ("divide=None", _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_10": ("np.errstate(divide=", _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_11": ('invalid="ignore", )', _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_4": ('use("agg")', _MPL_CASE),
    "dfer.train.metrics.x_plot_confusion__mutmut_5": ('use("AGG")', _MPL_CASE),
    "dfer.train.metrics.x_plot_confusion__mutmut_118": ('format="PNG"', _MPL_CASE),
    "dfer.train.metrics.x_plot_confusion__mutmut_123": (
        "plt.close(None)",
        "equivalent: close(None) closes the current figure, which is the one made a few lines "
        "above"),
    "dfer.train.metrics.x_uar__mutmut_11": ('float("NAN")', _NAN),
    "dfer.train.metrics.x_war__mutmut_9": ('float("NAN")', _NAN),
    # ---- frame sampling
    "dfer.core.frame_sampling.x_jittered_indices__mutmut_29": ("edges[:-1] - 1))", _SEGMENTS),
    "dfer.core.frame_sampling.x_jittered_indices__mutmut_30": ("edges[:+1] + 1))", _SEGMENTS),
    "dfer.core.frame_sampling.x_jittered_indices__mutmut_6": (
        ".astype(None)", "equivalent: the floored edges are integer-valued floats, and "
        "Generator.integers draws the same numbers from them as from their int64 copies"),
    "dfer.core.frame_sampling.x_sample_indices__mutmut_9": ("dtype=None)", _ARANGE),
    "dfer.core.frame_sampling.x_sample_indices__mutmut_11": ("np.arange(num_frames, )", _ARANGE),
    "dfer.core.frame_sampling.x_sample_indices__mutmut_13": (
        ") / (2 * num_frames)", "equivalent: true division then astype(int32) truncates toward "
        "zero, which is the floor of these non-negative values (frame counts are far below 2**53)"),
    "dfer.core.frame_sampling.x_uniform_indices__mutmut_3": (
        "wanted > available", "equivalent: for wanted == available, spread_indices(n, n) = "
        "round(linspace(0, n - 1, n)) is arange(n), the same int64 indices"),
    "dfer.core.frame_sampling.x_jittered_indices__mutmut_3": (
        "wanted > available", "equivalent: for wanted == available the edges are 0..n, so every "
        "segment is one frame, Generator.integers(k, k + 1) is k, and numpy draws nothing for a "
        "one-value range (the generator's state is unchanged too)"),
    # ---- crop, tracker
    "dfer.video.crop.x_crop_resize__mutmut_8": (
        "side >= size", "equivalent: at side == size the resize is 1:1, where INTER_AREA and "
        "INTER_LINEAR both copy the pixels"),
    "dfer.video.crop.x_detect_all__mutmut_40": (
        "factor != 2.0", "equivalent: factor is at most 1 (detect_scale is validated to (0, 1]); "
        "at factor 1 the extra cv2.resize to the same size copies the pixels"),
    "dfer.video.track.x_fill_and_smooth__mutmut_3": ("dtype=None)", _INTERP),
    "dfer.video.track.x_fill_and_smooth__mutmut_5": ("np.array(sorted(track), )", _INTERP),
    "dfer.video.track.x_fill_and_smooth__mutmut_9": ("dtype=None)", _INTERP),
    "dfer.video.track.x_fill_and_smooth__mutmut_11": ("for t in frames], )", _INTERP),
    "dfer.video.track.x_fill_and_smooth__mutmut_16": ("dtype=None)", _INTERP),
    "dfer.video.track.x_fill_and_smooth__mutmut_18": ("np.arange(num, )", _INTERP),
    # ---- model
    "dfer.model.text.x_encode_text__mutmut_7": ("cast = None", _FP32),
    "dfer.model.text.x_encode_text__mutmut_10": ("token_embedding(tokens).to(None)", _FP32),
    "dfer.model.text.x_encode_text__mutmut_12": ("positional_embedding[:n].to(None)", _FP32),
    "dfer.model.adapters.xǁTemporalAdapterǁforward__mutmut_41": (
        "frame_pos[:num_frames].to(None)", "equivalent: frame_pos has the module's dtype, which "
        "is h's; only under autocast would h be lower precision, and there the sum is merely kept "
        "in float32 before the attention casts it (rounding, not another result)"),
    "dfer.model.adapters.xǁTemporalAdapterǁforward__mutmut_46": ("need_weights=None", _WEIGHTS),
    "dfer.model.adapters.xǁTemporalAdapterǁforward__mutmut_50": ("self.attn(h, h, h, )", _WEIGHTS),
    "dfer.model.adapters.xǁTemporalAdapterǁforward__mutmut_51": ("need_weights=True", _WEIGHTS),
    "dfer.model.vision.x__attention__mutmut_7": ("if (cls_only) and False else out", _CLS_BROADCAST),
    "dfer.model.vision.x__attention__mutmut_9": ("out[:, :2] if cls_only", _CLS_BROADCAST),
    "dfer.model.vision.x__batched_block_forward__mutmut_31": ("x = x[:, :2]", _CLS_BROADCAST),
    "dfer.model.vision.x__cls_pool__mutmut_6": ('getattr(visual, "attn_pool", )', _VIT_ATTRS),
    "dfer.model.vision.x__cls_pool__mutmut_14": ('getattr(visual, "pool_type", )', _VIT_ATTRS),
    "dfer.model.vision.x__embeds__mutmut_39": (".view(1, -1).expand(", _EXPAND),
    "dfer.model.vision.x__embeds__mutmut_40": (".view(1, -1).expand(", _EXPAND),
    "dfer.model.vision.x__embeds__mutmut_48": ("expand(x.shape[0], +1, -1)", _EXPAND),
    "dfer.model.vision.x__embeds__mutmut_42": ("class_embedding.to(None)", _FP32),
    "dfer.model.vision.x__embeds__mutmut_59": ("positional_embedding.to(None)", _FP32),
    "dfer.model.vision.x__embeds__mutmut_62": ("temporal_embedding[:num_frames].to(None)", _FP32),
    "dfer.model.vision.x__per_stream__mutmut_17": ("strict=None", _SAME_SEGMENTS),
    "dfer.model.vision.x__per_stream__mutmut_20": ("zip(segs, outs, )", _SAME_SEGMENTS),
    "dfer.model.vision.x__per_stream__mutmut_21": ("strict=False", _SAME_SEGMENTS),
    "dfer.model.vision.x_encode_frames__mutmut_1": ("grad_checkpointing: bool = True", _CHECKPOINT),
    "dfer.model.vision.x_encode_streams__mutmut_1": ("grad_checkpointing: bool = True", _CHECKPOINT),
    "dfer.model.vision.x_encode_frames__mutmut_21": ("grad_checkpointing or torch.is_grad_enabled()", _CHECKPOINT),
    "dfer.model.vision.x_encode_streams__mutmut_43": ("grad_checkpointing or torch.is_grad_enabled()", _CHECKPOINT),
    "dfer.model.vision.x_encode_streams__mutmut_24": ("}) > 2:", _TOKEN_COUNT),
    "dfer.model.vision.x_encode_streams__mutmut_25": ("raise ValueError(None)", _TOKEN_COUNT),
    "dfer.model.vision.x_encode_streams__mutmut_26": ('raise ValueError("XXbatched', _TOKEN_COUNT),
    "dfer.model.vision.x_encode_streams__mutmut_27": ('raise ValueError("BATCHED', _TOKEN_COUNT),
    "dfer.model.fineclip.xǁFineCLIPEROutputǁprobabilities__mutmut_5": ("dim=+1)", _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_captions__mutmut_8": ("caption_adapter), )", _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_captions__mutmut_13": ("dim=+1)", _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁload_tunable_state_dict__mutmut_37": (
        "state[name].to(None)", "equivalent: Tensor.copy_ casts to the parameter's dtype itself"),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_text_features__mutmut_1": ("device = None", _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_text_features__mutmut_2": ("key = None", _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_text_features__mutmut_4": ("str(None))", _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_captions__mutmut_2": ("]).to(None)", _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁlosses__mutmut_67": ("device=None)", _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁlosses__mutmut_69": ("torch.arange(sims.shape[0], )", _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁlosses__mutmut_70": (
        "sims.shape[1]", "equivalent: video and caption features come one per clip, so the "
        "similarity matrix is square"),
    "dfer.model.fineclip.xǁFineCLIPERǁ_standardize__mutmut_14": (
        "running_var, eps=norm.eps)", "equivalent: F.batch_norm's training defaults to False"),
    "dfer.model.fineclip.xǁFineCLIPERǁ_standardize__mutmut_15": (
        "training=False, )", "equivalent: F.batch_norm's eps defaults to 1e-5, which is the "
        "BatchNorm1d's eps (built with its default)"),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_124": ('persistent=None)', _FALSY),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_148": ('persistent=None)', _FALSY),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_93": ('affine=None)', _FALSY),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_135": ('torch.tensor(mean).view(3, 1, 1)', _BROADCAST),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_159": ('torch.tensor(std).view(3, 1, 1)', _BROADCAST),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_16": ('visual.image_size[1]', _SQUARE),
    "dfer.model.fineclip.xǁFineCLIPERǁ__init____mutmut_170": ('self.labels: list[str] = None', _SET_LABELS),
    "dfer.model.fineclip.xǁFineCLIPERǁadapter_set__mutmut_2": ('level in ("parsing", "landmarks") or "mid"', _ADAPTER_SET),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_tokens__mutmut_1": ('device = None', _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_tokens__mutmut_2": ('key = None', _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_tokens__mutmut_4": ('str(None))', _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_tokens__mutmut_11": ('self.tokenizer(pos).to(None)', _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁclass_tokens__mutmut_13": ('self.tokenizer(neg).to(None)', _ONE_DEVICE),
    "dfer.model.fineclip.xǁFineCLIPERǁdescriptor_features__mutmut_3": ('not self._inner(self.pos_adapter) and not', _FROZEN_UNUSED),
    "dfer.model.fineclip.xǁFineCLIPERǁdescriptor_features__mutmut_4": ('if self._inner(self.pos_adapter) or not', _FROZEN_UNUSED),
    "dfer.model.fineclip.xǁFineCLIPERǁdescriptor_features__mutmut_5": ('self._inner(None) or', _FROZEN_UNUSED),
    "dfer.model.fineclip.xǁFineCLIPERǁdescriptor_features__mutmut_6": ('or self._inner(self.neg_adapter)', _FROZEN_UNUSED),
    "dfer.model.fineclip.xǁFineCLIPERǁdescriptor_features__mutmut_7": ('not self._inner(None):', _FROZEN_UNUSED),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_1": ('dtype = None', _FP32),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_5": ('self.to_pixels(images).to(None)', _FP32),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_20": ('grad_checkpointing=None)', _CHECKPOINT),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_24": ("+" + " " * 31 + ")", _CHECKPOINT),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_40": ('grad_checkpointing=None)', _CHECKPOINT),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_46": ('self.cfg.adapter_scale, )', _CHECKPOINT),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_29": ('strict=None', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_32": ('zip(inputs, feats, )', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁencode_levels__mutmut_33": ('strict=False', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_104": ('strict=None', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_107": ('zip(self.fused_levels, stacked, )', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_108": ('strict=False', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_59": ('strict=None', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_62": ('zip(weights, stacked, )', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_63": ('strict=False', _ONE_EACH),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_26": ('F.normalize(feats, )', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_27": ('F.normalize(feats, dim=+1)', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_54": ('strict=True)), )', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_64": ('dim=+1)', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_71": ('F.normalize(t_pos, )', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_72": ('F.normalize(t_pos, dim=+1)', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_80": ('F.normalize(t_neg, )', _LAST_DIM),
    "dfer.model.fineclip.xǁFineCLIPERǁforward__mutmut_81": ('F.normalize(t_neg, dim=+1)', _LAST_DIM),
    "dfer.model.text.x__used_length__mutmut_6": ('getattr(clip, "attn_mask", )', _CLIP_ATTRS),
    "dfer.model.text.x__used_length__mutmut_12": ('"text_pool_type", None)', _CLIP_ATTRS),
    "dfer.model.text.x__used_length__mutmut_15": ('getattr(clip, "text_pool_type", )', _CLIP_ATTRS),
    "dfer.model.text.x__used_length__mutmut_18": ('"text_pool_type", "XXargmaxXX")', _CLIP_ATTRS),
    "dfer.model.text.x__used_length__mutmut_19": ('"text_pool_type", "ARGMAX")', _CLIP_ATTRS),
    "dfer.model.text.x__used_length__mutmut_27": ('argmax(dim=+1)', _LAST_DIM),
    "dfer.model.text.x_encode_text__mutmut_69": ('getattr(clip, "text_eos_id", )', _CLIP_ATTRS),
    "dfer.model.vision.x__cat__mutmut_1": ('if (len(parts) == 1) and False', _CAT_ONE),
    "dfer.model.fineclip.xǁFineCLIPERǁto_pixels__mutmut_40": ('align_corners=None)', _ALIGN),
    "dfer.model.fineclip.xǁFineCLIPERǁto_pixels__mutmut_45": ('antialias=True, )', _ALIGN),
    # ---- skipping, orientation
    "dfer.video.skipping.x__decode_pass__mutmut_10": (
        "(frame.pts is not None) or True", "equivalent: ranks.get(None) is None, which is what "
        "the guarded branch gives a frame without a timestamp"),
    "dfer.video.reader.x_is_mirrored__mutmut_10": (
        'dtype="<i4", )', "equivalent: FFmpeg's display-matrix side data is exactly nine int32 "
        "(36 bytes), so count=9 reads all of it"),
    "dfer.video.reader.x_upright__mutmut_12": (
        "rotation or 1)", "equivalent: a missing or zero rotation becomes 1 degree, which rounds "
        "to the same zero quarter turns"),
    # ---- shard runner
    "dfer.core.shard_runner.x__batch_outcomes__mutmut_21": ("strict=None", _CHECKED_LENGTHS),
    "dfer.core.shard_runner.x__batch_outcomes__mutmut_24": ("zip(ready, answers, )", _CHECKED_LENGTHS),
    "dfer.core.shard_runner.x__batch_outcomes__mutmut_25": ("strict=False", _CHECKED_LENGTHS),
    "dfer.core.shard_runner.x_index_clip_ids__mutmut_4": ("columns=None", _ALL_COLUMNS),
    "dfer.core.shard_runner.x_index_clip_ids__mutmut_6": ("read_table(index_path, )", _ALL_COLUMNS),
    "dfer.core.shard_runner.x_shard_label__mutmut_4": ('split(".", )', _SPLIT_FIRST),
    "dfer.core.shard_runner.x_shard_label__mutmut_8": ('split(".", 2)', _SPLIT_FIRST),
    # ---- landmark and parsing images
    "dfer.train.render.x__mirror_68__mutmut_6": ("strict=None", _PAIRS),
    "dfer.train.render.x__mirror_68__mutmut_9": ("zip(a, b, )", _PAIRS),
    "dfer.train.render.x__mirror_68__mutmut_10": ("strict=False", _PAIRS),
    "dfer.train.render.x__mirror_68__mutmut_19": (
        "pair(list(range(8)),", "equivalent: range(8) is range(0, 8)"),
    "dfer.train.render.x__mirror_68__mutmut_105": (
        "np.asarray(perm, dtype=None)", "equivalent: an array of Python ints is int64 on the "
        "64-bit platforms dfer supports"),
    "dfer.train.render.x__mirror_68__mutmut_107": (
        "np.asarray(perm, )", "equivalent: an array of Python ints is int64 on the 64-bit "
        "platforms dfer supports"),
    "dfer.train.render.x_overlay_on_face__mutmut_17": (".astype(None) / 255.0", _BLEND64),
    "dfer.train.render.x_overlay_on_face__mutmut_28": ("marks.astype(None) +", _BLEND64),
    "dfer.train.render.x_overlay_on_face__mutmut_30": ("face.astype(None) *", _BLEND64),
    "dfer.train.render.x_overlay_on_face__mutmut_35": ("np.round(out), None, 255)", _BLEND_RANGE),
    "dfer.train.render.x_overlay_on_face__mutmut_36": ("np.round(out), 0, None)", _BLEND_RANGE),
    "dfer.train.render.x_overlay_on_face__mutmut_42": ("np.round(out), 0, 256)", _BLEND_RANGE),
    "dfer.train.render.x_render_landmarks__mutmut_47": (
        "reshape(-1, 2)", "equivalent: cv2.polylines takes an N x 2 int32 array as the same "
        "polyline as N x 1 x 2"),
    "dfer.train.render.x_render_landmarks__mutmut_51": (
        "reshape(-2, 1, 2)", "equivalent: numpy reads any negative size in reshape as the one "
        "unknown dimension, as -1"),
    "dfer.train.render.x_render_landmarks__mutmut_90": (
        "colour, -2, cv2.LINE_AA", "equivalent: any negative thickness makes cv2.circle fill "
        "the circle"),
    "dfer.train.render.x_render_parsing__mutmut_16": (
        "image.shape[:3] != (size, size)", "equivalent: a nearest-neighbour cv2.resize to the "
        "image's own size copies it, so resizing always gives the same pixels"),
    "dfer.train.render.x_render_parsing__mutmut_6": ("max(initial=None)", _NON_EMPTY_MAP),
    "dfer.train.render.x_render_parsing__mutmut_7": ("max(initial=1)", _NON_EMPTY_MAP),
    # ---- report text
    "dfer.report.write.x__display_summary__mutmut_11": ('strict=None', _STD_PAIR),
    "dfer.report.write.x__display_summary__mutmut_14": ('summary[f"{key}_std"], )', _STD_PAIR),
    "dfer.report.write.x__display_summary__mutmut_15": ('strict=False', _STD_PAIR),
    "dfer.report.write.x_markdown_table__mutmut_27": ('itertuples(index=None)', _INDEX_NONE),
    "dfer.report.write.x_coverage_notes__mutmut_2": ('itertuples(index=None)', _INDEX_NONE),
    "dfer.report.write.x_coverage_notes__mutmut_4": ('itertuples(index=True)', _BY_NAME),
    "dfer.report.write.x_build_report__mutmut_198": ('to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_225": ('to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_235": ('to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_32": ('to_csv(index=None)', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_41": ('to_csv(index=None)', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_50": ('to_csv(index=None)', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_199": ('na_rep=None, escape=True)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_202": ('to_html(index=False, escape=True)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_205": ('na_rep="XXXX", escape=True)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_236": ('shown_stats.to_html(index=False, na_rep=None)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_238": ('shown_stats.to_html(index=False, )', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_240": ('shown_stats.to_html(index=False, na_rep="XXXX")', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_203": ('to_html(index=False, na_rep="", )', _ESCAPE_DEFAULT),
    "dfer.report.write.x_build_report__mutmut_96": (
        'log.warning("\\n".join(missing))', "equivalent: logging applies % formatting only when "
        "arguments are given, so the message is the same text"),
    # ---- caption refinement
    "dfer.captions.refine.x__fix_articles__mutmut_13": ('"XXaeiouXX"', _LOWER_X),
    "dfer.captions.refine.x__words__mutmut_3": ('strip("XX\'XX")', _LOWER_X),
    "dfer.captions.refine.x_has_verb__mutmut_4": ('strip("XX\'XX")', _LOWER_X),
    "dfer.captions.refine.x__verb_form__mutmut_6": ('("ING",)', _CUT_LENGTH),
    "dfer.captions.refine.x__verb_form__mutmut_10": ('("ED", "d")', _CUT_LENGTH),
    "dfer.captions.refine.x__verb_form__mutmut_12": ('("ed", "D")', _CUT_LENGTH),
    "dfer.captions.refine.x__verb_form__mutmut_16": ('("ES", "s")', _CUT_LENGTH),
    "dfer.captions.refine.x__verb_form__mutmut_18": ('("es", "S")', _CUT_LENGTH),
    "dfer.captions.refine.x__verb_form__mutmut_22": ('("S",)', _CUT_LENGTH),
    "dfer.captions.refine.x__verb_form__mutmut_35": (
        "len(stem) >= 2", "equivalent: no verb base has one letter, so the doubled-consonant "
        "rule never finds stem[:-1] of a two-letter stem among them"),
    "dfer.captions.refine.x__verb_form__mutmut_36": (
        "len(stem) > 3", "equivalent on English verb forms: the only two-letter base is 'go', "
        "and its 'doubled' stem 'goo' + -s / -ed / -ing is no verb form of it"),
    "dfer.captions.refine.x__refine_sentence__mutmut_31": (
        '("XXXX", _LEADING_CONNECTIVE', _FIRST_SEP),
    "dfer.captions.refine.x__split_clauses__mutmut_5": ('[("XXXX", parts[0])]', _FIRST_SEP),
    "dfer.captions.refine.x__refine_sentence__mutmut_64": (
        "text.strip(None)", "equivalent: clauses hold no , ; : (they are the separators the "
        "sentence was split at) and are stripped, and the join puts separators only between "
        "non-empty clauses, so the text has no separator or space at either end to strip"),
    "dfer.captions.refine.x__refine_sentence__mutmut_67": (
        'return "XXXX"', "equivalent (unreachable): the line above returned unless a kept clause "
        "has a letter, and strip(' ,;:') removes none, so the text is never empty here"),
    "dfer.captions.refine.x__strip_emotion_words__mutmut_9": (
        "(_EMO_NP.search(out)) or True", "equivalent: the leading-'and' pattern contains the "
        "emotion noun phrase, so where _EMO_NP finds nothing neither substitution changes the text"),
    # ---- training data
    "dfer.train.data.x__resize__mutmut_24": ('antialias=True, align_corners=None)', _ALIGN),
    "dfer.train.data.x__resize__mutmut_29": ('antialias=True, )', _ALIGN),
    "dfer.train.data.x__resize__mutmut_43": ('clamp(None, 255)', _CONVEX),
    "dfer.train.data.x__resize__mutmut_44": ('clamp(0, None)', _CONVEX),
    "dfer.train.data.x__resize__mutmut_46": ('clamp(0, )', _CONVEX),
    "dfer.train.data.x__resize__mutmut_48": ('clamp(0, 256)', _CONVEX),
    "dfer.train.data.x_collate__mutmut_9": ('for it in items], dtype=None)', _TORCH_LONG),
    "dfer.train.data.x_collate__mutmut_11": ('for it in items], )', _TORCH_LONG),
    "dfer.train.data.x_dataset_shards__mutmut_10": ('shards_in(folder, )', _PARQUET_DEFAULT),
    "dfer.train.data.x_prepare_clip__mutmut_11": ('frames.shape[2]', _SQUARE_CROP),
    "dfer.train.data.x_prepare_clip__mutmut_72": ('strict=None', _MID_PAIRS),
    "dfer.train.data.x_prepare_clip__mutmut_75": ('zip(faces, imgs, )', _MID_PAIRS),
    "dfer.train.data.x_prepare_clip__mutmut_76": ('strict=False', _MID_PAIRS),
    "dfer.train.data.xǁClipDatasetǁ__getitem____mutmut_14": ('random() <= 0.5', _HALF),
    "dfer.train.data.xǁClipDatasetǁ_load__mutmut_1": ('flip: bool = True', _FLIP_PASSED),
    "dfer.train.data.xǁClipDatasetǁ_load__mutmut_74": ('(self.needs.landmarks or self.needs.parsing) or True', _RENDERERS_UNUSED),
    "dfer.train.data.x__shard_clips__mutmut_3": ('~np.asarray(keep, dtype=None)', _BOOL_KEEP),
    "dfer.train.data.x__shard_clips__mutmut_5": ('~np.asarray(keep, )', _BOOL_KEEP),
    "dfer.train.data.x__shard_clips__mutmut_14": ('index[np.asarray(keep, dtype=None)]', _BOOL_KEEP),
    "dfer.train.data.x__shard_clips__mutmut_16": ('index[np.asarray(keep, )]', _BOOL_KEEP),
    "dfer.train.data.x__shard_clips__mutmut_41": ('index["XXclip_idXX"]', _STR_IDS),
    "dfer.train.data.x__shard_clips__mutmut_42": ('index["CLIP_ID"]', _STR_IDS),
    "dfer.train.data.x__shard_clips__mutmut_53": ('(sources is not None) or True', _NONE_EQ_1),
    "dfer.train.data.x__shard_clips__mutmut_107": ('merge(points, on=None,', _MERGE_ON),
    "dfer.train.data.x__shard_clips__mutmut_111": ('merge(points, how="inner",', _MERGE_ON),
    "dfer.train.data.x__shard_clips__mutmut_173": ('merge(caps, on=None,', _MERGE_ON),
    "dfer.train.data.x__shard_clips__mutmut_112": ('on="clip_id", sort=False)', _MERGE_HOW),
    "dfer.train.data.x__shard_clips__mutmut_109": ('how="inner", sort=None)', _MERGE_SORT),
    "dfer.train.data.x__shard_clips__mutmut_113": ('how="inner", )', _MERGE_SORT),
    "dfer.train.data.x__shard_clips__mutmut_118": ('how="inner", sort=True)', _MERGE_SORT),
    "dfer.train.data.xǁClipTableǁaccount__mutmut_32": ('strict=None', _LOST_PAIRS),
    "dfer.train.data.xǁClipTableǁaccount__mutmut_35": ('lost["error_type"], )', _LOST_PAIRS),
    "dfer.train.data.xǁClipTableǁaccount__mutmut_40": ('strict=False', _LOST_PAIRS),
    "dfer.train.data.xǁClipTableǁaccount__mutmut_45": ('pd.Series(keys, dtype=None)', _KEYS_OBJECT),
    "dfer.train.data.xǁClipTableǁaccount__mutmut_47": ('pd.Series(keys, )', _KEYS_OBJECT),
    "dfer.train.data.xǁSplitAccountǁtext__mutmut_20": ("policy or 'XXXX'", _POLICY_NONE),
    "dfer.train.data.x__shard_clips__mutmut_175": ('how="left", sort=None)', _MERGE_SORT),
    "dfer.train.data.x__shard_clips__mutmut_179": ('how="left", )', _MERGE_SORT),
    "dfer.train.data.x__shard_clips__mutmut_184": ('how="left", sort=True)', _MERGE_SORT),
    "dfer.train.data.x__shard_clips__mutmut_177": ('merge(caps, how="left",', _MERGE_ON),
    "dfer.train.data.x_listed_clips__mutmut_36": ('rows["XXclip_idXX"]', _STR_IDS),
    "dfer.train.data.x_listed_clips__mutmut_37": ('rows["CLIP_ID"]', _STR_IDS),
    "dfer.train.data.x_listed_clips__mutmut_86": ('ignore_index=None)', _CONCAT_INDEX),
    "dfer.train.data.x_listed_clips__mutmut_88": ('pd.concat([rows, extra], )', _CONCAT_INDEX),
    "dfer.train.data.x_listed_clips__mutmut_89": ('ignore_index=False)', _CONCAT_INDEX),
    "dfer.train.data.x_listed_clips__mutmut_98": ('kind=None)', _UNIQUE_SORT),
    "dfer.train.data.x_listed_clips__mutmut_100": ('sort_values("clip_id", )', _UNIQUE_SORT),
    "dfer.train.data.x_listed_clips__mutmut_103": ('kind="XXstableXX"', _UNIQUE_SORT),
    "dfer.train.data.x_listed_clips__mutmut_104": ('kind="STABLE"', _UNIQUE_SORT),
    "dfer.train.data.x_read_clip_table__mutmut_34": ('"XXoptionalXX"', _OPTIONAL_MODE),
    "dfer.train.data.x_read_clip_table__mutmut_73": ('ignore_index=None) if rows', _CONCAT_INDEX),
    "dfer.train.data.x_read_clip_table__mutmut_75": ('pd.concat(rows, ) if rows', _CONCAT_INDEX),
    "dfer.train.data.x_read_clip_table__mutmut_76": ('ignore_index=False) if rows', _CONCAT_INDEX),
    "dfer.train.data.x_read_clip_table__mutmut_93": ('kind=None)', _UNIQUE_SORT),
    "dfer.train.data.x_read_clip_table__mutmut_95": ('sort_values("clip_id", )', _UNIQUE_SORT),
    "dfer.train.data.x_read_clip_table__mutmut_98": ('kind="XXstableXX"', _UNIQUE_SORT),
    "dfer.train.data.x_read_clip_table__mutmut_99": ('kind="STABLE"', _UNIQUE_SORT),
    "dfer.train.data.x__log_losses__mutmut_4": ('strict=None', _LOST_PAIRS),
    "dfer.train.data.x__log_losses__mutmut_7": ('lost["error_type"], )', _LOST_PAIRS),
    "dfer.train.data.x__log_losses__mutmut_12": ('strict=False', _LOST_PAIRS),
    "dfer.train.data.x__log_losses__mutmut_15": ('pd.Series(keys, dtype=None)', _KEYS_OBJECT),
    "dfer.train.data.x__log_losses__mutmut_17": ('pd.Series(keys, )', _KEYS_OBJECT),
    "dfer.train.data.x__log_losses__mutmut_40": ('(len(clips)) or True', _EMPTY_SUM),
    "dfer.train.data.x_lost_table__mutmut_51": ('lost["XXtest_foldXX"]', _FOLDS_INT64),
    "dfer.train.data.x_lost_table__mutmut_52": ('lost["TEST_FOLD"]', _FOLDS_INT64),
    "dfer.train.data.x_lost_table__mutmut_53": ('astype(None)', _FOLDS_INT64),
    "dfer.train.data.x_read_clip_table__mutmut_35": ('"OPTIONAL"', _OPTIONAL_MODE),
    "dfer.train.data.x_listed_clips__mutmut_20": ('shard_name(int(k), None)', _SHARD_WIDTH),
    "dfer.train.data.x_listed_clips__mutmut_22": ('shard_name(int(k), )', _SHARD_WIDTH),
    "dfer.train.data.x_listed_clips__mutmut_54": ('num_shards), None) in wanted', _SHARD_WIDTH),
    "dfer.train.data.x_listed_clips__mutmut_56": ('num_shards), ) in wanted', _SHARD_WIDTH),
    # ---- evaluation
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_221": ('to_dict("RECORDS")', _ORIENT_CASE),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_83": ('shuffle=None,', _SHUFFLE_NONE),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_88": ('dcfg.batch_size, num_workers=', _LOADER_DEFAULT),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_106": ('None, np.zeros((0, len(labels))', _EMPTY_PREDS),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_109": ('np.zeros(0, np.int64), None, [])', _EMPTY_PREDS),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_117": ('np.zeros((0, len(labels)), None)', _EMPTY_PREDS),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_119": ('np.zeros((0, len(labels)), )', _EMPTY_PREDS),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_122": ('np.zeros(0, None)', _EMPTY_PREDS),
    "dfer.train.evaluate.x_evaluate_checkpoint__mutmut_124": ('np.zeros(0, )', _EMPTY_PREDS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_128": ('first.get("zero_shot", None)', _BOOL_NONE),
    "dfer.train.evaluate.x_summarize_folds__mutmut_130": ('first.get("zero_shot", )', _BOOL_NONE),
    "dfer.train.evaluate.x_summarize_folds__mutmut_49": ('strict=None', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_52": ('zip(counts, folds, )', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_53": ('strict=False', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_72": ('strict=None', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_75": ('zip(counts, folds, )', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_76": ('strict=False', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_227": ('strict=None', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_230": ('zip(folds, counts, )', _FOLD_PAIRS),
    "dfer.train.evaluate.x_summarize_folds__mutmut_231": ('strict=False', _FOLD_PAIRS),
    "dfer.train.evaluate.x_predict_split__mutmut_5": ('lightning_devices(device, )', _ONE_PROCESS),
    "dfer.train.evaluate.x_predict_split__mutmut_10": ('precision=None,', _CPU_PRECISION),
    "dfer.train.evaluate.x_predict_split__mutmut_18": ('+        logger=False, enable_checkpointing=False,', _CPU_PRECISION),
    "dfer.train.evaluate.x_predict_split__mutmut_16": ('+        devices=devices,', _CPU_ACCEL),
    "dfer.train.evaluate.x_predict_split__mutmut_17": ('accelerator=accelerator, precision=', _CPU_ACCEL),
    "dfer.train.evaluate.x_predict_split__mutmut_12": ('enable_checkpointing=None,', _PREDICT_NO_CKPT),
    "dfer.train.evaluate.x_predict_split__mutmut_20": ('logger=False, enable_model_summary=False', _PREDICT_NO_CKPT),
    "dfer.train.evaluate.x_predict_split__mutmut_26": ('enable_checkpointing=True,', _PREDICT_NO_CKPT),
    "dfer.train.evaluate.x_predict_split__mutmut_13": ('enable_model_summary=None,', _DISPLAY),
    "dfer.train.evaluate.x_predict_split__mutmut_14": ('enable_progress_bar=None,', _DISPLAY),
    "dfer.train.evaluate.x_predict_split__mutmut_21": ('+        enable_progress_bar=True, default_root_dir', _DISPLAY),
    "dfer.train.evaluate.x_predict_split__mutmut_22": ('enable_model_summary=False, default_root_dir', _DISPLAY),
    "dfer.train.evaluate.x_predict_split__mutmut_27": ('enable_model_summary=True,', _DISPLAY),
    "dfer.train.evaluate.x_predict_split__mutmut_28": ('enable_progress_bar=False,', _DISPLAY),
    "dfer.train.evaluate.x_predict_split__mutmut_15": ('default_root_dir=None,', _NO_FILES),
    "dfer.train.evaluate.x_predict_split__mutmut_23": ('enable_progress_bar=True, )', _NO_FILES),
    "dfer.train.evaluate.x_predict_split__mutmut_29": ('default_root_dir=str(None),', _NO_FILES),
    "dfer.train.evaluate.x_predictions_frame__mutmut_19": ('(len(prob)) or True', _EMPTY_MAX),
    "dfer.train.evaluate.x_predictions_frame__mutmut_22": ('prob.max(+1)', _LAST_DIM),
    "dfer.train.evaluate.x_predictions_frame__mutmut_35": ('dtype=None),', _EMPTY_SERIES),
    "dfer.train.evaluate.x_predictions_frame__mutmut_37": ('for row in prob], ),', _EMPTY_SERIES),
    "dfer.train.evaluate.x_predictions_frame__mutmut_44": ('row.astype(None).tolist()', _TOLIST),
    # ---- shard reader
    "dfer.train.shard_reader.x__release_arrow_memory__mutmut_1": ('release = None', _MEMORY_ONLY),
    "dfer.train.shard_reader.x__release_arrow_memory__mutmut_2": ('getattr(None, "release_unused", None)', _MEMORY_ONLY),
    "dfer.train.shard_reader.x__release_arrow_memory__mutmut_6": ('"release_unused", )', _MEMORY_ONLY),
    "dfer.train.shard_reader.x__release_arrow_memory__mutmut_7": ('"XXrelease_unusedXX"', _MEMORY_ONLY),
    "dfer.train.shard_reader.x__release_arrow_memory__mutmut_8": ('"RELEASE_UNUSED"', _MEMORY_ONLY),
    "dfer.train.shard_reader.x__release_arrow_memory__mutmut_9": ('if release is None:', _MEMORY_ONLY),
    "dfer.train.shard_reader.x__remove_folder__mutmut_3": ('ignore_errors=None)', _RMTREE),
    "dfer.train.shard_reader.x__remove_folder__mutmut_5": ('shutil.rmtree(folder, )', _RMTREE),
    "dfer.train.shard_reader.x__remove_folder__mutmut_6": ('ignore_errors=False)', _RMTREE),
    "dfer.train.shard_reader.x_load_landmark_points__mutmut_4": ('read_sorted(path, None)', _MORE_COLUMNS),
    "dfer.train.shard_reader.x_load_landmark_points__mutmut_6": ('read_sorted(path, )', _MORE_COLUMNS),
    "dfer.train.shard_reader.x_load_landmark_points__mutmut_16": ('points_array(table, None)', _PATH_IN_ERROR),
    "dfer.train.shard_reader.xǁLRUǁget__mutmut_6": ('popitem(last=None)', _FALSY),
    "dfer.train.shard_reader.xǁSideStoreǁ__init____mutmut_7": ('mkdtemp(prefix=None)', _PRIVATE_NAMES),
    "dfer.train.shard_reader.xǁSideStoreǁ__init____mutmut_8": ('prefix="XXdfer-clips-XX"', _PRIVATE_NAMES),
    "dfer.train.shard_reader.xǁSideStoreǁ__init____mutmut_9": ('prefix="DFER-CLIPS-"', _PRIVATE_NAMES),
    "dfer.train.shard_reader.xǁSideStoreǁ__init____mutmut_18": ('"XXcaptions.txtXX"', _PRIVATE_NAMES),
    "dfer.train.shard_reader.xǁSideStoreǁ__init____mutmut_19": ('"CAPTIONS.TXT"', _PRIVATE_NAMES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_15": ('strict=None)}', _TWO_COLUMNS),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_18": ('to_pylist(), )}', _TWO_COLUMNS),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_25": ('strict=False)}', _TWO_COLUMNS),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_29": ('encode("UTF-8")', _CODEC),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_3": ('read_table(path, columns=None)', _MORE_COLUMNS),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_5": ('pq.read_table(path, )', _MORE_COLUMNS),
    "dfer.train.shard_reader.xǁSideStoreǁadd_captions__mutmut_36": ('np.int64, )', _FROMITER_COUNT),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_19": ('pd.Series(None, dtype=object)', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_20": ('pd.Series([], dtype=None), "lm_start"', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_21": ('pd.Series(dtype=object)', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_22": ('pd.Series([], ), "lm_start"', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_25": ('"lm_start": pd.Series(None, dtype=np.int64)', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_27": ('"lm_start": pd.Series(dtype=np.int64)', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_31": ('"lm_stop": pd.Series(None, dtype=np.int64)', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁadd_landmarks__mutmut_33": ('"lm_stop": pd.Series(dtype=np.int64)', _EMPTY_SERIES),
    "dfer.train.shard_reader.xǁSideStoreǁcaption__mutmut_15": ('decode("UTF-8")', _CODEC),
    "dfer.train.shard_reader.xǁSideStoreǁcaption__mutmut_4": ('open(self.captions_path, )', _PREAD_MODE),
    "dfer.model.config.x_migrate_v1__mutmut_61": ('d.pop("mid_temporal_adapter", None)', _FALSY),
    # ---- the files a training job reads
    "dfer.train.inputs.xǁDataInputsǁfrom_files__mutmut_93": (
        "else 100,", "equivalent: any position after the four stages' (0..3) puts a folder that "
        "is no stage last"),
    "dfer.train.inputs.xǁDataInputsǁfrom_results__mutmut_11": (
        "shards_in(folder, )", "equivalent: shards_in's suffix defaults to '.parquet' (PARQUET)"),
    "dfer.train.inputs.xǁDataInputsǁfrom_results__mutmut_32": ("captions=None)", _FALSY),
    "dfer.train.inputs.xǁDataInputsǁfrom_results__mutmut_35": (
        "landmarks=needs.landmarks, )", "equivalent: Needs.captions defaults to False"),
    # ---- report tables
    "dfer.report.metrics_table.x_coverage_text__mutmut_14": (
        "else 101.0", "equivalent (unreachable): the share of an empty split (listed 0) is only "
        "shown when evaluated != listed, and the evaluated clips are among the listed"),
    "dfer.report.metrics_table.x_incomplete_folds__mutmut_11": (
        'fillna(1))', "equivalent: fillna only fills the rows whose listed is NaN, which isna() "
        "has already flagged"),
    "dfer.report.metrics_table.x_read_metrics__mutmut_57": (
        'm.get("zero_shot", None)', "equivalent: bool(None) is bool(False)"),
    "dfer.report.metrics_table.x_read_metrics__mutmut_59": (
        'm.get("zero_shot", )', "equivalent: bool(None) is bool(False)"),
    "dfer.report.metrics_table.x_summarize__mutmut_15": (
        "groupby(keys, )", "equivalent: DataFrame.groupby sorts the groups by default"),
    "dfer.report.metrics_table.x_summarize__mutmut_29": ("strict=None", _GROUP_KEY),
    "dfer.report.metrics_table.x_summarize__mutmut_32": ("zip(keys, key, )", _GROUP_KEY),
    "dfer.report.metrics_table.x_summarize__mutmut_33": ("strict=False", _GROUP_KEY),
    "dfer.report.metrics_table.x_summarize__mutmut_77": ("columns=None", _ROW_ORDER),
    "dfer.report.metrics_table.x_summarize__mutmut_79": ("pd.DataFrame(rows, )", _ROW_ORDER),
    "dfer.report.stage_stats.x__captions_cut__mutmut_19": ('pq.read_table(path, columns=None)', _SS_ALL_COLUMNS),
    "dfer.report.stage_stats.x__captions_cut__mutmut_21": ('pq.read_table(path, )', _SS_ALL_COLUMNS),
    "dfer.report.stage_stats.x__labels__mutmut_10": ('pq.read_table(manifest, columns=None)', _SS_ALL_COLUMNS),
    "dfer.report.stage_stats.x__labels__mutmut_12": ('pq.read_table(manifest, )', _SS_ALL_COLUMNS),
    "dfer.report.stage_stats.x__read_columns__mutmut_5": ('pq.read_table(path, columns=None)', _SS_ALL_COLUMNS),
    "dfer.report.stage_stats.x__read_columns__mutmut_7": ('pq.read_table(path, )', _SS_ALL_COLUMNS),
    "dfer.report.stage_stats.x__failures__mutmut_7": ('ignore_index=None)', _SS_INDEX),
    "dfer.report.stage_stats.x__failures__mutmut_9": ('pd.concat(tables, )', _SS_INDEX),
    "dfer.report.stage_stats.x__failures__mutmut_10": ('ignore_index=False)', _SS_INDEX),
    "dfer.report.stage_stats.x_stage_stats__mutmut_90": ('ignore_index=None)', _SS_INDEX),
    "dfer.report.stage_stats.x_stage_stats__mutmut_92": ('pd.concat(parts, )', _SS_INDEX),
    "dfer.report.stage_stats.x_stage_stats__mutmut_93": ('ignore_index=False)', _SS_INDEX),
    "dfer.report.stage_stats.x__failures__mutmut_11": ('pd.DataFrame(columns=None)', _SS_EMPTY_FAILS),
    "dfer.report.stage_stats.x__failures__mutmut_12": ('"XXclip_idXX"', _SS_EMPTY_FAILS),
    "dfer.report.stage_stats.x__failures__mutmut_13": ('"CLIP_ID"', _SS_EMPTY_FAILS),
    "dfer.report.stage_stats.x__failures__mutmut_14": ('"XXerror_typeXX"', _SS_EMPTY_FAILS),
    "dfer.report.stage_stats.x__failures__mutmut_15": ('"ERROR_TYPE"', _SS_EMPTY_FAILS),
    "dfer.report.stage_stats.x_stage_stats__mutmut_153": (
        'if (len(fails)) or True else 0', "equivalent: the empty failures frame has a clip_id column, "
        "and nunique() of no rows is 0, the value of the else branch"),
    "dfer.report.stage_stats.x__labels__mutmut_7": (
        'pd.Series(dtype=None)', "equivalent: an empty Series of dtype str is of dtype object, as "
        "one without a dtype; only .empty and reindex are asked of it"),
    "dfer.report.stage_stats.x__lost_by_class__mutmut_1": (
        'if not len(fails) and labels.empty:', "equivalent: with either side empty the long path "
        "gives \"\" too: no failed ids, or every id reindexed to NaN and dropped"),
    "dfer.report.stage_stats.x__shard_tables__mutmut_9": (
        'shards_in(folder, )', "equivalent: shards_in's default suffix is \".parquet\", the value "
        "of PARQUET"),
    "dfer.report.stage_stats.x_stage_stats__mutmut_61": (
        'if (folder.is_dir()) or True else []', "equivalent: shards_in returns [] for a folder "
        "that does not exist, the value of the else branch"),
    "dfer.report.gallery.x__asset__mutmut_12": ('read_text(encoding="UTF-8")', _CODEC),
    "dfer.report.gallery.x__data_uri__mutmut_4": (".decode('ASCII')", _CODEC),
    "dfer.report.gallery.x__read_json__mutmut_4": ('read_text(encoding="UTF-8")', _CODEC),
    "dfer.report.gallery.x_build_fold__mutmut_46": ('cards_js.encode("UTF-8")', _CODEC),
    "dfer.report.gallery.x_build_fold__mutmut_64": ('.encode("UTF-8"))', _CODEC),
    "dfer.report.gallery.x_build_fold__mutmut_90": ('.encode("UTF-8"))', _CODEC),
    "dfer.report.gallery.x_build_fold__mutmut_108": ('.encode("UTF-8"))', _CODEC),
    "dfer.report.gallery.x_write_embedded__mutmut_25": ('encoding="UTF-8") as fh', _CODEC),
    "dfer.report.gallery.x__captions__mutmut_32": ('raw, strict=None)', _G_SAME_LEN),
    "dfer.report.gallery.x__captions__mutmut_36": ('raw, )', _G_SAME_LEN),
    "dfer.report.gallery.x__captions__mutmut_43": ('raw, strict=False)', _G_SAME_LEN),
    "dfer.report.gallery.x__points__mutmut_38": ('strict=None)', _G_SAME_LEN),
    "dfer.report.gallery.x__points__mutmut_41": ('zip(starts, stops, )', _G_SAME_LEN),
    "dfer.report.gallery.x__points__mutmut_42": ('strict=False)', _G_SAME_LEN),
    "dfer.report.gallery.x__captions__mutmut_7": ('pq.read_table(path, columns=None)', _SS_ALL_COLUMNS),
    "dfer.report.gallery.x__captions__mutmut_9": ('pq.read_table(path, )', _SS_ALL_COLUMNS),
    "dfer.report.gallery.x_clip_artifacts__mutmut_16": ('PARQUET), columns=None)', _SS_ALL_COLUMNS),
    "dfer.report.gallery.x_clip_artifacts__mutmut_18": ('PARQUET), )', _SS_ALL_COLUMNS),
    "dfer.report.gallery.x__sha256__mutmut_10": ('fh.read(None)', _G_BLOCK),
    "dfer.report.gallery.x__sha256__mutmut_12": ('fh.read(2 << 20)', _G_BLOCK),
    "dfer.report.gallery.x__sha256__mutmut_13": ('fh.read(1 << 21)', _G_BLOCK),
    "dfer.report.gallery.x_select_cards__mutmut_4": ('kind=None)', _G_MULTI_SORT),
    "dfer.report.gallery.x_select_cards__mutmut_6": ('"clip_id"], kind="stable")', _G_MULTI_SORT),
    "dfer.report.gallery.x_select_cards__mutmut_7": ('ascending=True, )', _G_MULTI_SORT),
    "dfer.report.gallery.x_select_cards__mutmut_15": ('kind="XXstableXX")', _G_MULTI_SORT),
    "dfer.report.gallery.x_select_cards__mutmut_16": ('kind="STABLE")', _G_MULTI_SORT),
    "dfer.report.gallery.x_fold_record__mutmut_19": ('m.get("zero_shot", None)', _G_BOOL_NONE),
    "dfer.report.gallery.x_fold_record__mutmut_21": ('m.get("zero_shot", )', _G_BOOL_NONE),
    "dfer.report.gallery.x_clip_artifacts__mutmut_12": ('shards_in(folder, )', _G_SHARDS_IN),
    "dfer.report.gallery.x_fold_inputs__mutmut_10": ('shards_in(folder, )', _G_SHARDS_IN),
    "dfer.report.gallery.x__asset__mutmut_1": ('read_text(encoding=None)', _LOCALE),
    "dfer.report.gallery.x__read_json__mutmut_2": ('path.read_text(encoding=None)', _LOCALE),
    "dfer.report.gallery.x_write_embedded__mutmut_19": ('tmp.open("w", encoding=None)', _LOCALE),
    "dfer.report.gallery.x_write_embedded__mutmut_21": ('tmp.open("w", )', _LOCALE),
    "dfer.report.gallery.x_write_embedded__mutmut_2": ('marker = "XX', _G_MARKER),
    "dfer.report.gallery.x_write_embedded__mutmut_3": ('DFER-DATA', _G_MARKER),
    "dfer.report.gallery.x__points__mutmut_17": ('to_pylist(), dtype=None)', _G_INT_LIST),
    "dfer.report.gallery.x__points__mutmut_19": ('to_pylist(), )', _G_INT_LIST),
    "dfer.report.gallery.x__points__mutmut_4": ('read_sorted(path, None)', _MORE_COLUMNS),
    "dfer.report.gallery.x__points__mutmut_6": ('read_sorted(path, )', _MORE_COLUMNS),
    "dfer.report.gallery.x__script_json__mutmut_3": ('ensure_ascii=None', _G_ASCII_NONE),
    "dfer.report.gallery.x_build_fold__mutmut_118": ('shutil.rmtree(staging, ignore_errors=None)', _G_STAGING),
    "dfer.report.gallery.x_build_fold__mutmut_120": ('shutil.rmtree(staging, )', _G_STAGING),
    "dfer.report.gallery.x_build_fold__mutmut_121": ('shutil.rmtree(staging, ignore_errors=False)', _G_STAGING),
    "dfer.report.gallery.x_card_lines__mutmut_13": ('itertuples(index=None)', _INDEX_NONE),
    "dfer.report.gallery.x_card_lines__mutmut_14": ('itertuples(index=True)', _BY_NAME),
    "dfer.report.gallery.x_card_lines__mutmut_17": ('["XXXX"] * len(rows)', _G_EVERY_LINE),
    "dfer.report.gallery.x_card_record__mutmut_3": ('np.asarray(row.probs, dtype=None)', _G_EXACT64),
    "dfer.report.gallery.x_card_record__mutmut_5": ('np.asarray(row.probs, )', _G_EXACT64),
    "dfer.report.gallery.x_card_record__mutmut_8": ('np.argsort(-probs, kind=None)', _G_TIES),
    "dfer.report.gallery.x_card_record__mutmut_10": ('np.argsort(-probs, )', _G_TIES),
    "dfer.report.gallery.x_card_record__mutmut_13": ('kind="STABLE"', _G_KIND_CASE),
    "dfer.report.gallery.x_face_strip__mutmut_17": ('".JPG"', _G_EXT_CASE),
    "dfer.report.gallery.x_landmark_strip__mutmut_53": ('".PNG"', _G_EXT_CASE),
    "dfer.report.gallery.x_parsing_strip__mutmut_43": ('".PNG"', _G_EXT_CASE),
    "dfer.report.gallery.x_landmark_strip__mutmut_4": ('np.zeros((THUMB, THUMB, 4), None)', _G_CV_U8),
    "dfer.report.gallery.x_landmark_strip__mutmut_6": ('np.zeros((THUMB, THUMB, 4), )', _G_CV_U8),
    "dfer.report.gallery.x_parsing_strip__mutmut_18": ('.astype(None)[..., None]', _G_CV_U8),
    "dfer.report.gallery.x_landmark_strip__mutmut_15": ('.astype(None)', _G_INT_COORDS),
    "dfer.report.gallery.x_landmark_strip__mutmut_25": ('PART_COLOURS[part], 256)', _G_SATURATE),
    "dfer.report.gallery.x_landmark_strip__mutmut_32": ('1, colour, -1, None)', _G_LINE8),
    "dfer.report.gallery.x_landmark_strip__mutmut_38": ('1, colour, -1, )', _G_LINE8),
    "dfer.report.gallery.x_landmark_strip__mutmut_43": ('1, colour, -2, cv2.LINE_8)', _G_FILLED),
    "dfer.report.gallery.x_landmark_strip__mutmut_54": ('IMWRITE_PNG_COMPRESSION, 10]', _G_PNG9),
    "dfer.report.gallery.x_parsing_strip__mutmut_44": ('IMWRITE_PNG_COMPRESSION, 10]', _G_PNG9),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_align__mutmut_5": ('device=None)', _ONE_DEVICE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_align__mutmut_7": ('torch.arange(sims.shape[0], )', _ONE_DEVICE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_align__mutmut_8": ('torch.arange(sims.shape[1], device=sims.device)', _SQUARE_SIMS),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_46": ('self.embed_dim, device=None)', _ONE_DEVICE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_49": ('torch.zeros(batch, self.embed_dim, )', _ONE_DEVICE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_116": ('stacked, strict=None)}', _ONE_EACH),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_119": ('zip(self.fused_levels, stacked, )', _ONE_EACH),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_120": ('stacked, strict=False)}', _ONE_EACH),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_71": ('zip(weights, stacked, strict=None)', _ONE_EACH),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_74": ('zip(weights, stacked, )', _ONE_EACH),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_75": ('zip(weights, stacked, strict=False)', _ONE_EACH),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_28": ('F.normalize(feats, )', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_29": ('F.normalize(feats, dim=+1)', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_66": ('strict=True)), )', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_76": ('strict=True)), dim=+1)', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_83": ('F.normalize(t_pos, )', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_84": ('F.normalize(t_pos, dim=+1)', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_92": ('F.normalize(t_neg, )', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁforward__mutmut_93": ('F.normalize(t_neg, dim=+1)', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁlosses__mutmut_59": ('out.caption.abs().sum(+1)', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ__init____mutmut_125": ('persistent=None)', _FALSY),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ__init____mutmut_149": ('persistent=None)', _FALSY),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ__init____mutmut_94": ('affine=None)', _FALSY),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ__init____mutmut_136": ('torch.tensor(mean).view(3, 1, 1)', _BROADCAST),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ__init____mutmut_160": ('torch.tensor(std).view(3, 1, 1)', _BROADCAST),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ__init____mutmut_171": ('self.labels: list[str] = None', _SET_LABELS),
    "dfer.model.backbone.x__torchscript_state__mutmut_12": ('warnings.simplefilter("ignore", )', _BB_WARNINGS),
    "dfer.model.backbone.x__torchscript_state__mutmut_17": ('map_location=None)', _BB_MAP_CPU),
    "dfer.model.backbone.x__torchscript_state__mutmut_19": ('torch.jit.load(str(path), )', _BB_MAP_CPU),
    "dfer.report.write.x_build_report__mutmut_105": ('log.warning("\\n".join(missing))', _W_LOG_ARGS),
    "dfer.report.write.x_build_report__mutmut_59": ('stats.to_csv(index=None)', _INDEX_NONE),
    "dfer.model.backbone.x__build_clip__mutmut_17": ('explicit.get("text_cfg", None)', _BB_TEXT_CFG),
    "dfer.model.backbone.x__build_clip__mutmut_19": ('explicit.get("text_cfg", )', _BB_TEXT_CFG),
    "dfer.model.backbone.x__build_clip__mutmut_35": ('pretrained=tag, load_weights=None)', _BB_LOAD_NO_TAG),
    "dfer.model.backbone.x__build_clip__mutmut_38": ('pretrained=tag, )', _BB_LOAD_NO_TAG),
    "dfer.model.backbone.x__build_clip__mutmut_39": ('load_weights=tag is None)', _BB_LOAD_TAG),
    "dfer.model.backbone.x__copy__mutmut_2": ('copy.copy(dict(cfg))', _BB_DEEPCOPY),
    "dfer.model.backbone.x_build_clip__mutmut_1": ('fork_rng(devices=None)', _BB_FORK_CPU),
    "dfer.model.backbone.x_load_backbone_weights__mutmut_63": ('load_state_dict(state, strict=None)', _CK_STRICT),
    "dfer.model.backbone.x_load_backbone_weights__mutmut_65": ('load_state_dict(state, )', _CK_STRICT),
    "dfer.model.backbone.x_load_backbone_weights__mutmut_66": ('load_state_dict(state, strict=False)', _CK_STRICT),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_10": ('load_file(str(p), device=None)', _BB_ST_CPU),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_12": ('load_file(str(p), )', _BB_ST_CPU),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_21": ('map_location=None, weights_only=True)', _BB_MAP_CPU),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_24": ('torch.load(str(p), weights_only=True)', _BB_MAP_CPU),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_22": ('weights_only=None)', _BB_WEIGHTS_ONLY),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_25": ('map_location="cpu", )', _BB_WEIGHTS_ONLY),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_6": ('"XX.safetensorsXX"', _BB_ST_SUFFIX),
    "dfer.model.backbone.x_read_backbone_state_dict__mutmut_7": ('".SAFETENSORS"', _BB_ST_SUFFIX),
    "dfer.report.write.x_build_report__mutmut_286": ('shown_summary.to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_287": ('shown_summary.to_html(index=False, na_rep=None', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_290": ('shown_summary.to_html(index=False, escape=True)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_293": ('shown_summary.to_html(index=False, na_rep="XXXX"', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_291": ('shown_summary.to_html(index=False, na_rep="", )', _ESCAPE_DEFAULT),
    "dfer.report.write.x_build_report__mutmut_316": ('_display_folds(video_folds).to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_331": ('shown_stats.to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_332": ('shown_stats.to_html(index=False, na_rep=None)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_334": ('shown_stats.to_html(index=False, )', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_336": ('shown_stats.to_html(index=False, na_rep="XXXX")', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_157": ('shown_static.to_html(index=None', _INDEX_NONE),
    "dfer.report.write.x_build_report__mutmut_158": ('shown_static.to_html(index=False, na_rep=None', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_161": ('shown_static.to_html(index=False, escape=True)', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_164": ('shown_static.to_html(index=False, na_rep="XXXX"', _NO_NAN_SHOWN),
    "dfer.report.write.x_build_report__mutmut_162": ('shown_static.to_html(index=False, na_rep="", )', _ESCAPE_DEFAULT),
    "dfer.report.write.x_build_report__mutmut_169": ('shown_static_folds.to_html(index=None', _INDEX_NONE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_caption_features__mutmut_24": ('self.embed_dim, device=None)', _ONE_DEVICE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_caption_features__mutmut_27": ('torch.zeros(len(captions), self.embed_dim, )', _ONE_DEVICE),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_caption_features__mutmut_32": ('out = out.to(None)', _FP32),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_shared_losses__mutmut_30": ('caption.abs().sum(+1)', _LAST_DIM),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_standardize__mutmut_18": ('norm.running_var, eps=norm.eps)', _BN_DEFAULTS),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_standardize__mutmut_19": ('training=False, )', _BN_DEFAULTS),
    "dfer.methods.fineclipper.xǁFineCLIPERǁ_standardize__mutmut_39": ('norm.running_mean is not None or norm.running_var', _BN_STATS),
    "dfer.methods.specs.fineclipper.x_migrate_v1__mutmut_61": ('d.pop("mid_temporal_adapter", None)', _FALSY),
    "dfer.methods.checkpoint.x_load_method_state__mutmut_64": ('state.items()}, strict=None)', _CK_STRICT),
    "dfer.methods.checkpoint.x_load_method_state__mutmut_66": ('state.items()}, )', _CK_STRICT),
    "dfer.methods.checkpoint.x_load_method_state__mutmut_68": ('state.items()}, strict=False)', _CK_STRICT),
    "dfer.methods.checkpoint.x_load_method_state__mutmut_67": ('v.to(None)', _CK_TO_NONE),
    "dfer.methods.checkpoint.x_load_checkpoint__mutmut_77": ('load_method_state(model, state, None)', _CK_SPEC),
    "dfer.methods.checkpoint.x_load_checkpoint__mutmut_80": ('load_method_state(model, state, )', _CK_SPEC),
    "dfer.methods.checkpoint.x_save_checkpoint__mutmut_5": ('method_state(model, None)', _CK_SPEC),
    "dfer.methods.checkpoint.x_save_checkpoint__mutmut_7": ('method_state(model, )', _CK_SPEC),
}

# the gallery's comparison view (dfer.report.gallery_pairs)
_GP_FLOAT = ("equivalent: astype(None) is float64, and the column is float64 after the left merge "
             "(NaN for a clip the reference did not evaluate) or turned back by the next astype / where")
_GP_MERGE_ON = ("equivalent: clip_id is the only column both tables have (the reference's columns "
                "are renamed ref_*), so merging on the common columns is merging on clip_id")
EQUIVALENT.update({
    "dfer.report.gallery_pairs.x_agreement__mutmut_82": (
        'binomtest(only_this, discordant, )',
        "equivalent: binomtest's p defaults to 0.5 (McNemar's null hypothesis)"),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_21": ('ref["pred_idx"].astype(None)', _GP_FLOAT),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_26": ('ref["prob"].astype(None)', _GP_FLOAT),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_31": ('ref["correct"].astype(None)', _GP_FLOAT),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_66": ('out["pred_idx"].astype(None)', (
        "equivalent: class indices compared as float64 against the int64 reference column are "
        "equal exactly when they are equal as integers")),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_36": ('merge(ref, on=None, how="left")', _GP_MERGE_ON),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_39": ('merge(ref, how="left")', _GP_MERGE_ON),
    "dfer.report.gallery_pairs.x_join_reference__mutmut_60": ('where(present, None)', (
        "equivalent: the filled None becomes False in the astype(bool) that follows, as False does")),
})


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class Module:
    """One ``[module NAME]`` section of mutation.cfg: a row of the report, a mutmut run."""

    name: str
    files: tuple[str, ...]
    tests: tuple[str, ...]
    mutants: tuple[str, ...] = ()
    part_of: str = ""
    note: str = ""
    #: the module the code moved to: this section only keeps the rows measured before the move
    moved_to: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)

    def counts_mutant(self, name: str) -> bool:
        return not self.mutants or any(fnmatch.fnmatch(name, p) for p in self.mutants)

    def selected_by(self, wanted: str) -> bool:
        return any(n == wanted or n.startswith(wanted + ".") for n in (self.name, self.part_of) if n)


def _lines(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split() if v)


def read_config(path: Path = CONFIG) -> tuple[configparser.ConfigParser, list[Module]]:
    cfg = configparser.ConfigParser()
    cfg.read(path)
    modules = []
    for section in cfg.sections():
        if not section.startswith("module "):
            continue
        s = cfg[section]
        modules.append(Module(section.split(" ", 1)[1].strip(), _lines(s.get("files", "")),
                              _lines(s.get("tests", "")), _lines(s.get("mutants", "")),
                              s.get("part_of", "").strip(), " ".join(s.get("note", "").split()),
                              s.get("moved_to", "").strip()))
    MOVED.update({m.moved_to: m.name for m in modules if m.moved_to})
    return cfg, modules


def select(modules: list[Module], wanted: list[str] | None) -> list[Module]:
    """The sections to run; a moved one (its code lives elsewhere now) is never run again."""
    moved = [m.name for m in modules if m.moved_to and wanted and m.name in wanted]
    if moved:
        raise SystemExit(f"{', '.join(moved)}: the code moved (see moved_to in {CONFIG.name}); "
                         "run the module it moved to")
    runnable = [m for m in modules if not m.moved_to]
    if not wanted:
        return runnable
    chosen = [m for m in runnable if any(m.selected_by(w) for w in wanted)]
    unknown = [w for w in wanted if not any(m.selected_by(w) for m in modules)]
    if unknown:
        raise SystemExit(f"no module in {CONFIG.name} matches {unknown}; known: "
                         f"{', '.join(m.name for m in modules)}")
    return chosen


# --------------------------------------------------------------------------- running mutmut
def prepare(work: Path, common: configparser.ConfigParser, module: Module, tests: tuple[str, ...],
            tests_rev: str | None = None) -> None:
    """Scratch copy of src/, tests/, data_manifests/ and pyproject.toml, with the shared
    settings plus this module's files and tests as its setup.cfg."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", work / "src", ignore=ignore)
    copy_tests(work, tests_rev)
    for extra in COPIED:  # what tests read besides src/ (docs they check, example configs)
        if (REPO / extra).is_dir():
            shutil.copytree(REPO / extra, work / extra, ignore=ignore)
        elif (REPO / extra).exists():
            shutil.copy2(REPO / extra, work / extra)
    write_settings(work, common, module, tests)


def write_settings(work: Path, common: configparser.ConfigParser, module: Module, tests: tuple[str, ...]) -> None:
    """The scratch copy's setup.cfg: the shared settings plus this module's files and tests."""
    out = configparser.ConfigParser()
    out["mutmut"] = dict(common["mutmut"])
    out["mutmut"]["only_mutate"] = "\n" + "\n".join(module.files)
    out["mutmut"]["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(tests)
    with open(work / "setup.cfg", "w") as fh:
        out.write(fh)
    if (work / "mutants").is_dir():
        shutil.copy2(work / "setup.cfg", work / "mutants" / "setup.cfg")


def copy_tests(work: Path, rev: str | None = None) -> None:
    """Today's tests/, or those of git revision ``rev`` (a baseline with the tests of then)."""
    if (work / "tests").exists():
        shutil.rmtree(work / "tests")
    if rev is None:
        shutil.copytree(REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "tests"], stdout=subprocess.PIPE, check=True)
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)


def mutmut_bin() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    return str(exe) if exe.exists() else "mutmut"


#: Imported at start-up by every Python process of a run (sitecustomize): mutmut forks one
#: worker per mutant from a process that has already run the tests, and tqdm's monitor thread,
#: started there by the first progress bar, may hold tqdm's lock at the moment of the fork; the
#: worker's first progress bar then waits for it forever, and the mutant is counted as a
#: time-out (it happened to a quarter of the shard runner's run_batches mutants). Without the
#: monitor thread (it only tightens a bar's refresh interval) no lock is held across the fork.
SITECUSTOMIZE = """\
try:
    import tqdm
    tqdm.tqdm.monitor_interval = 0
except ImportError:
    pass
"""
SITE = WORK / "_site"


def _env() -> dict[str, str]:
    # one thread per worker: forked workers must not inherit a busy OpenMP pool (torch), and
    # the run should not take more cores than --max-children
    SITE.mkdir(parents=True, exist_ok=True)
    (SITE / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path,
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


_LIST = """
import json, sys
from pathlib import Path
from mutmut.mutation.file_mutation import mutate_file_contents
from mutmut.utils.format_utils import get_mutant_name
names = []
for src in json.load(sys.stdin):
    path = Path(src)
    names += [get_mutant_name(path.relative_to("src"), n)
              for n in mutate_file_contents(src, path.read_text()).mutant_names]
print(json.dumps(names))
"""


def all_mutants(work: Path, module: Module) -> list[str]:
    """The names of the mutants mutmut makes of the module's files (those the module counts)."""
    proc = subprocess.run([sys.executable, "-c", _LIST], cwd=work, input=json.dumps(list(module.files)),
                          stdout=subprocess.PIPE, text=True, check=True, env=_env())
    return [n for n in json.loads(proc.stdout.strip().splitlines()[-1]) if module.counts_mutant(n)]


def run_mutmut(work: Path, max_children: int, names: list[str]) -> float:
    """``mutmut run`` in ``work`` (only ``names`` when given); returns its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run([mutmut_bin(), "run", "--max-children", str(max_children), *names], cwd=work,
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.replace("\r", "\n").splitlines() if ln.strip()]
    print("\n".join(lines[-8:]))
    if proc.returncode != 0:
        print("\n".join(lines[-60:]))
        raise SystemExit(f"mutmut run failed (exit {proc.returncode}); output above")
    return elapsed


def outcomes(work: Path, module: Module) -> dict[str, str]:
    """``{mutant name: outcome}`` of the module's mutants, from mutmut's per-file ``.meta``."""
    out: dict[str, str] = {}
    for src in module.files:
        meta = work / "mutants" / (src + ".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        out.update({name: STATUS.get(code, "suspicious") for name, code in codes.items()
                    if module.counts_mutant(name)})
    return out


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for name, path in json.load(sys.stdin):
    try:
        out[name] = get_diff_for_mutant(name, path=path)
    except Exception as exc:  # a diff is only for the report; never fail the run on it
        out[name] = f"(no diff: {exc})"
print(json.dumps(out))
"""


def mutant_diffs(work: Path, module: Module, names: list[str]) -> dict[str, str]:
    """The changed lines of each mutant, in one mutmut process."""
    if not names:
        return {}
    by_file = {}
    for name in names:
        stem = name.split(".x_")[0].split(".xǁ")[0]
        by_file[name] = next(f for f in module.files if f == "src/" + stem.replace(".", "/") + ".py")
    proc = subprocess.run([sys.executable, "-c", _DIFFS], cwd=work, input=json.dumps(list(by_file.items())),
                          stdout=subprocess.PIPE, text=True, check=True, env=_env())
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: "\n".join(ln for ln in diff.splitlines()
                            if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
            for name, diff in diffs.items()}


#: new module -> old module of code that moved (mutation.cfg's ``moved_to``), filled by
#: :func:`read_config`: a mutant of moved code keeps the explanation written for its old name
#: while its mutated line is still the same (the line check below)
MOVED: dict[str, str] = {}


def explanation(name: str) -> tuple[str, str]:
    """``(mutated line, reason)`` of a survivor, under its own name or the name it had before
    its code moved; ``("", "")`` when it has none."""
    if name in EQUIVALENT:
        return EQUIVALENT[name]
    for new, old in MOVED.items():
        if name.startswith(new + "."):
            return EQUIVALENT.get(old + name[len(new):], ("", ""))
    return ("", "")


def is_equivalent(name: str, diff: str) -> bool:
    line = explanation(name)[0]
    return bool(line) and line in "\n".join(ln for ln in diff.splitlines() if ln.startswith("+"))


# ------------------------------------------------------------------------------------ records
def load_records(path: Path = RECORDS) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def record(module: Module, results: dict[str, str], diffs: dict[str, str], elapsed: float,
           tests: tuple[str, ...], workers: int, how: str) -> dict[str, Any]:
    """One run of one module, as mutation.json keeps it (survivors with their diffs)."""
    counts = {"killed": sum(s in DETECTED for s in results.values()),
              "survived": sum(s == "survived" for s in results.values())}
    counts["other"] = len(results) - counts["killed"] - counts["survived"]
    counts["total"] = len(results)
    return {
        "date": dt.date.today().isoformat(), "mutmut": metadata.version("mutmut"),
        "python": sys.version.split()[0], "workers": workers, "wall_s": round(elapsed, 1),
        "tests": list(tests), "how": how, "counts": counts,
        "not_detected": {n: {"status": s, "diff": diffs.get(n, "")}
                         for n, s in sorted(results.items()) if s not in DETECTED},
        "timeouts": sorted(n for n, s in results.items() if s == "timeout"),
    }


def equivalents(rec: dict[str, Any]) -> set[str]:
    return {n for n, v in rec["not_detected"].items()
            if v["status"] == "survived" and is_equivalent(n, v["diff"])}


def _untestable(name: str) -> bool:
    return explanation(name)[1].startswith("not testable")


def _row(name: str, rec: dict[str, Any]) -> str:
    c = rec["counts"]
    explained = equivalents(rec)
    untestable = sum(_untestable(n) for n in explained)
    equiv = f"{len(explained) - untestable}" + (f" (+{untestable} not testable here)" if untestable else "")
    score = f"{100 * c['killed'] / c['total']:.1f}%" if c["total"] else "n/a"
    sample = " (sample)" if rec["how"].startswith("sample") else ""
    when = f"{rec['date']}, {rec['wall_s'] / 60:.1f} min" if rec["wall_s"] else f"{rec['date']} (imported)"
    return (f"| {name} | {c['killed']} | {len(rec.get('timeouts', []))} | {c['survived']} | {equiv} "
            f"| {c['other']} | {c['total']}{sample} | {score} | {when} |")


_HEAD = ("| module | killed | of them by time-out | survived | of them equivalent | no tests / other "
         "| total | score (killed / total) | run |\n|---|---:|---:|---:|---:|---:|---:|---:|---|")


def render(modules: list[Module], records: dict[str, dict[str, Any]]) -> str:
    """mutation.md from every module's records (modules never run say so)."""
    names = {m.name: (f"{m.name} ({m.note})" if m.note else m.name) for m in modules}
    names.update({m.name: f"{m.name} (measured before the code moved to {m.moved_to})"
                  for m in modules if m.moved_to})
    current = [_row(names[m.name], records[m.name]["current"]) for m in modules
               if m.name in records and "current" in records[m.name]]
    pending = [m.name for m in modules if "current" not in records.get(m.name, {}) and not m.moved_to]
    base = [_row(names[m.name], records[m.name]["baseline"]) for m in modules
            if "baseline" in records.get(m.name, {})]
    out = [
        "# Mutation testing",
        "",
        "Written by `benchmarks/mutation.py` (`make mutation`; kept out of CI) from "
        "`benchmarks/results/mutation.json`; settings, and which tests meet each module's "
        "mutants, in `benchmarks/mutation.cfg`. Each module is its own mutmut run, so modules can "
        "be run in pieces: `python benchmarks/mutation.py --modules dfer.video`.",
        "",
        "*killed* counts mutants the tests fail on, and those stopped by the time limit (counted "
        "apart: a time-out under a heavily loaded machine is re-run before it is trusted); the "
        "score is killed / total. "
        "*of them equivalent*: survivors that behave exactly like the original (listed below "
        "with the reason), which no test can kill. *run*: date and wall time of the mutmut run "
        "(one worker unless said otherwise below).",
        "",
        "## Score",
        "",
        _HEAD,
        *current,
        "",
    ]
    moved = [m for m in modules if m.moved_to]
    if moved:
        out += ["Moved code: " + "; ".join(
            f"`{m.name}` now lives in `{m.moved_to}` (its row above, its runs and survivors below "
            f"were measured on the code before the move and are kept as they were)"
            for m in moved) + ".", ""]
    if pending:
        out += ["Configured but not run yet: " + ", ".join(f"`{n}`" for n in pending) + ".", ""]
    if base:
        out += ["## Baseline (before the value tests of issue 25 were added)", "",
                "The same modules with the tests that existed before. A row marked *(sample)* "
                "ran a random sample of the module's mutants (seed and size below), where "
                "running all of them against the slower existing tests would have taken hours.",
                "", _HEAD, *base, ""]
    out += ["## Runs", ""]
    for m in modules:
        for kind in ("current", "baseline"):
            rec = records.get(m.name, {}).get(kind)
            if rec:
                out.append(f"- `{m.name}` {kind}: {rec['how']}; mutmut {rec['mutmut']}, Python "
                           f"{rec['python']}, {rec['workers']} worker(s); tests: "
                           + ", ".join(f"`{t}`" for t in rec["tests"]) + ".")
    out += ["", "## Surviving mutants", ""]
    any_survivor = False
    for m in modules:
        rec = records.get(m.name, {}).get("current")
        if not rec:
            continue
        equiv = equivalents(rec)
        # a survivor of code that moved is not open: its mutant was run again in the new module
        open_reason = (f"measured before the code moved; the code is measured again under "
                       f"`{m.moved_to}` (its survivors, if any, are listed there)"
                       if m.moved_to else "**needs a test**")
        for name, v in rec["not_detected"].items():
            any_survivor = True
            reason = explanation(name)[1] if name in equiv else open_reason
            out += [f"- `{name}` ({v['status']}): {reason}", "", "  ```diff",
                    *("  " + ln for ln in v["diff"].splitlines()), "  ```", ""]
    if not any_survivor:
        out.append("None.")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------- main
def run_module(module: Module, common: configparser.ConfigParser, args: argparse.Namespace,
               previous: dict[str, Any] | None) -> dict[str, Any]:
    work = WORK / (module.slug + (".baseline" if args.baseline else ""))
    tests = tuple(args.tests) if args.tests else module.tests
    names: list[str] = []
    if args.rerun:
        if previous is None or not (work / "mutants").is_dir():
            raise SystemExit(f"--rerun {module.name}: needs a kept scratch copy ({work}) and a "
                             "stored result; run once with --keep first")
        copy_tests(work)  # today's tests; mutmut adds the stats of new ones itself
        if (work / "mutants" / "tests").is_dir():
            shutil.rmtree(work / "mutants" / "tests")
            shutil.copytree(work / "tests", work / "mutants" / "tests")
        write_settings(work, common, module, tests)
        # which tests reach which function is re-collected: mutmut adds new tests to its stats,
        # but not what an edited test newly reaches
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        names = sorted(previous["not_detected"]) + sorted(previous.get("timeouts", []))
        if not names:
            return previous
    else:
        prepare(work, common, module, tests, args.tests_rev)
        if args.sample or module.mutants:
            names = all_mutants(work, module)
        if args.sample and args.sample < len(names):
            names = sorted(random.Random(args.seed).sample(names, args.sample))
    print(f"== {module.name}: {len(names) or 'all'} mutants, tests: {' '.join(tests)}", flush=True)
    try:
        elapsed = run_mutmut(work, args.max_children, names)
        results = outcomes(work, module)
        if names:
            results = {n: results.get(n, "not checked") for n in names}
        diffs = mutant_diffs(work, module, [n for n, s in results.items() if s not in DETECTED])
    finally:
        if not args.keep and not args.rerun:
            shutil.rmtree(work, ignore_errors=True)
    if args.rerun:
        assert previous is not None
        still = {n: s for n, s in results.items() if s not in DETECTED}
        counts = dict(previous["counts"])
        # the re-run time-outs were counted as killed; count them (and the survivors) anew
        rerun_timeouts = set(previous.get("timeouts", [])) & set(results)
        counts["killed"] += len(results) - len(still) - len(rerun_timeouts)
        counts["survived"] = sum(s == "survived" for s in still.values())
        counts["other"] = counts["total"] - counts["killed"] - counts["survived"]
        today = dt.date.today().isoformat()
        timeouts = sorted((set(previous.get("timeouts", [])) - set(results))
                          | {n for n, s in results.items() if s == "timeout"})
        return {**previous, "counts": counts, "date": today, "tests": list(tests), "timeouts": timeouts,
                "wall_s": round(previous["wall_s"] + elapsed, 1),
                "how": previous["how"] + f"; its {len(results)} survivors and time-outs re-run "
                       f"on {today} against the tests of that day",
                "not_detected": {n: {"status": s, "diff": diffs.get(n, "")} for n, s in sorted(still.items())}}
    if args.sample and names:
        how = f"sample of {len(names)} mutants (seed {args.seed})"
    else:
        how = f"all {len(results)} mutants" + (f" matching {', '.join(module.mutants)}" if module.mutants else "")
    if args.tests_rev:
        how += f"; the tests as of commit {args.tests_rev}"
    return record(module, results, diffs, elapsed, tests, args.max_children, how)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", nargs="+", help="module names or prefixes (default: all)")
    ap.add_argument("--tests", nargs="+", help="test selection instead of the module's")
    ap.add_argument("--tests-rev", help="take tests/ from this git revision (e.g. for a baseline)")
    ap.add_argument("--baseline", action="store_true",
                    help="store this run as the module's baseline, not as its current score")
    ap.add_argument("--sample", type=int, default=0, help="run only this many random mutants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-children", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help=f"keep the scratch copies under {WORK}")
    ap.add_argument("--rerun", action="store_true",
                    help="re-run only the stored survivors in the kept scratch copy, with today's tests")
    ap.add_argument("--list", action="store_true", help="list the modules and their stored scores")
    ap.add_argument("--render", action="store_true", help="only rewrite mutation.md from mutation.json")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)

    common, modules = read_config()
    records = load_records()
    if args.list:
        for m in modules:
            rec = records.get(m.name, {}).get("current")
            c = rec["counts"] if rec else None
            print(f"{m.name:32s} " + (f"{c['killed']}/{c['total']} ({rec['date']})" if c else "not run"))
        return 0
    if not args.render:
        for module in select(modules, args.modules):
            kind = "baseline" if args.baseline else "current"
            rec = run_module(module, common, args, records.get(module.name, {}).get(kind))
            records = load_records()  # another run (another module) may have written since
            records.setdefault(module.name, {})[kind] = rec
            RECORDS.write_text(json.dumps(records, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
            c = rec["counts"]
            print(f"{module.name}: {c['killed']}/{c['total']} killed, {c['survived']} survived "
                  f"({len(equivalents(rec))} equivalent), {rec['wall_s']:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(modules, load_records()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
