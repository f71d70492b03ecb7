"""Writers of tiny corpora in each official layout, with the quirks of the real files.

Tests never read the real corpora (users do not have them); these files copy their structure:
EmotionLines' `\\u0092` escapes and pretty-printed JSON, MELD's quoted timestamps, Mastodon's
trailing spaces, MMSA's label.csv column orders, IEMOCAP's session folders and `._` files.
"""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path
from types import SimpleNamespace


def data_config(dataset: str, path: Path, **keys) -> SimpleNamespace:
    """What a loader reads of DataConfig, without the cross-key rules of a full RunConfig."""
    defaults = {"target": None, "fold": None, "num_folds": None, "labels": None, "id_column": None}
    defaults["train_on_dev"] = False
    defaults.update(text_column="text", label_column="label")
    return SimpleNamespace(dataset=dataset, path=str(path), **{**defaults, **keys})


def write_friends(folder: Path, splits: dict[str, list[list[tuple[str, str, str]]]]) -> Path:
    """splits: split -> dialogues -> (speaker, utterance, emotion). Written like EmotionLines:
    indent 4, non-ASCII as \\u escapes (so ’ typed on Windows appears as `\\u0092`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, dialogues in splits.items():
        data = [
            [{"speaker": s, "utterance": u, "emotion": e, "annotation": "0000500"} for s, u, e in d]
            for d in dialogues
        ]
        (folder / f"friends_{split}.json").write_text(json.dumps(data, indent=4), encoding="utf-8")
    return folder


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"


def write_meld(
    folder: Path, splits: dict[str, list[tuple]], encoding: str = "utf-8", bom: bool = False
) -> Path:
    """splits: split -> rows (utterance, speaker, emotion, sentiment, dialogue, utterance id)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        path = folder / f"{split}_sent_emo.csv"
        with path.open("w", encoding="utf-8-sig" if bom else encoding, newline="") as handle:
            handle.write(MELD_HEADER + "\r\n")
            writer = csv.writer(handle)
            for number, (text, speaker, emotion, sentiment, dialogue, turn) in enumerate(rows, 1):
                times = ["00:16:16,059", "00:16:21,731"]  # commas inside: quoted, as in MELD
                writer.writerow(
                    [number, text, speaker, emotion, sentiment, dialogue, turn, 8, 21, *times]
                )
    return folder


def write_mastodon(folder: Path, train: list[str], test: list[str]) -> Path:
    """Lines `<position> <sentiment>_<act> <tokens>` with the real files' trailing space."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("datatrainJoint.txt", train), ("datatestJoint.txt", test)):
        (folder / name).write_text("".join(line + " \n" for line in lines), encoding="utf-8")
        (folder / name.replace(".txt", ".idx")).write_text("0 1_2 4915 4388\n", encoding="utf-8")
    return folder


# MMSA's label.csv, the release layout of both CMU-MOSI and CH-SIMS.
MMSA_COLUMNS = (
    "video_id",
    "clip_id",
    "text",
    "label",
    "label_T",
    "label_A",
    "label_V",
    "annotation",
    "mode",
)


def write_label_csv(
    folder: Path, rows: list[dict], columns: tuple[str, ...] = MMSA_COLUMNS, bom: bool = False
) -> Path:
    """MMSA's label.csv; missing columns in a row are written empty (MOSI's label_T/A/V)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "label.csv").open(
        "w", encoding="utf-8-sig" if bom else "utf-8", newline=""
    ) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def clip(video: str, clip_id: int, text: str, label: float, mode: str) -> dict:
    annotation = "Negative" if label < 0 else "Neutral" if label == 0 else "Positive"
    return {
        "video_id": video,
        "clip_id": clip_id,
        "text": text,
        "label": label,
        "annotation": annotation,
        "mode": mode,
    }


def write_m3ed(folder: Path, series: dict[str, dict], splits: dict[str, list[str]]) -> Path:
    """series: name -> dialogue id -> (speakers {"A": name}, [(utterance id, speaker, text, emotion)])."""
    annotation = {}
    for name, dialogues in series.items():
        annotation[name] = {}
        for dialogue_id, (speakers, utterances) in dialogues.items():
            info = {
                key: {"Name": who, "Age": "young", "Gender": "female", "OtherName": []}
                for key, who in speakers.items()
            }
            dialog = {
                uid: {
                    "StartTime": "00:00:00:01",
                    "EndTime": "00:00:01:04",
                    "Text": text,
                    "Speaker": speaker,
                    "EmoAnnotation": {
                        "EmoAnnotator1": emotion,
                        "EmoAnnotator2": emotion,
                        "EmoAnnotator3": emotion,
                        "final_mul_emo": emotion,
                        "final_main_emo": emotion,
                    },
                }
                for uid, speaker, text, emotion in utterances
            }
            annotation[name][dialogue_id] = {"SpeakerInfo": info, "Dialog": dialog}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "annotation.json").write_text(
        json.dumps(annotation, ensure_ascii=False, indent=4), encoding="utf-8"
    )
    (folder / "splitInfo").mkdir(exist_ok=True)
    for split, names in splits.items():
        (folder / "splitInfo" / f"movie_list_{split}.txt").write_text(
            "".join(n + "\n" for n in names), encoding="utf-8"
        )
    return folder


def write_iemocap(
    folder: Path, dialogs: dict[str, list[tuple[str, str, str]]], wav: bool = True
) -> Path:
    """dialogs: dialog name (Ses01F_impro01) -> [(utterance suffix F000, code, text)]; the session
    folder comes from the name. Every session folder is made, with the real files' `._` twins."""
    for session in range(1, 6):
        for part in ("dialog/EmoEvaluation/Categorical", "dialog/transcriptions"):
            (folder / f"Session{session}" / part).mkdir(parents=True, exist_ok=True)
    for dialog, utterances in dialogs.items():
        session = folder / f"Session{int(dialog[3:5])}"
        labels = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        lines = []
        for number, (suffix, code, text) in enumerate(utterances):
            start, end = f"{6.2901 + 3 * number:.4f}", f"{8.2357 + 3 * number:.4f}"
            name = f"{dialog}_{suffix}"
            labels += [
                f"[{start} - {end}]\t{name}\t{code}\t[2.5000, 2.5000, 2.5000]",
                "C-E2:\tNeutral;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            lines.append(f"{name} [{float(start):08.4f}-{float(end):08.4f}]: {text}")
            if wav:
                (session / "sentences" / "wav" / dialog).mkdir(parents=True, exist_ok=True)
                write_wav(session / "sentences" / "wav" / dialog / f"{name}.wav")
        (session / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(
            "\n".join(labels) + "\n", encoding="utf-8"
        )
        (session / "dialog" / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(
            b"\x00\x05\x16\x07Mac OS X"
        )
        (session / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )
    return folder


def write_wav(path: Path, frames: int = 160) -> Path:
    """A short silent 16-bit mono WAV, the format of EmoDB's and IEMOCAP's files."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\x00\x00" * frames)
    return path


def write_emodb(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_wav(folder / name)
    return folder
