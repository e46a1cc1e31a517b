"""A multi-speaker test corpus with reference RTTM, from Festival voices recorded by different people.

Each voice is a Debian ``festvox-*`` package (diphone or HTS voices built from recordings of one
person each); they speak sentences of their own language. A conversation strings utterances of
2-4 voices together in one of three conditions:

- ``pauses``: 0.3-1.0 s of silence between turns;
- ``quick``: 0.05-0.25 s between turns, frequent speaker changes;
- ``overlap``: like ``quick``, but about a third of the turns start 0.2-0.7 s before the previous
  one ends (both are then speaking; the RTTM has both).

Everything is deterministic given the seed (Festival's synthesis is deterministic; utterances are
cached under ``.cache/diarization/utterances``). Usage::

    .venv/bin/python -m tests.support.diarization_corpus --out /tmp/corpus --count 10 --speakers 2 3
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "diarization" / "utterances"
SAMPLE_RATE = 16000
CONDITIONS = ("pauses", "quick", "overlap")

_EN = [
    "Good morning everyone, let us start with the budget for the next quarter.",
    "I think we should move the release to the end of the month.",
    "The test results from last week look much better than before.",
    "Can you send me the numbers before the meeting on Friday?",
    "We still have two open questions about the new storage system.",
    "That sounds reasonable, but the customer asked for a demo first.",
    "Let me check the schedule and come back to you this afternoon.",
    "Our team finished the migration without any downtime.",
    "I would like to hear what the others think about this plan.",
    "The main risk is that the supplier delivers the parts too late.",
    "We could hire two more engineers if the budget allows it.",
    "Please write down the decision so that nobody forgets it.",
]
_IT = [
    "Buongiorno a tutti, oggi parliamo del progetto e delle prossime scadenze.",
    "Secondo me dobbiamo rivedere il piano prima della fine del mese.",
    "I risultati della settimana scorsa sono molto incoraggianti.",
    "Potresti mandarmi il documento entro domani mattina?",
    "Abbiamo ancora qualche dubbio sul nuovo sistema di archiviazione.",
    "Il cliente vuole vedere una dimostrazione prima di firmare.",
    "Controllo il calendario e ti rispondo nel pomeriggio.",
    "La squadra ha finito il lavoro senza nessun problema.",
]
_CS = [
    "Dobry den, dnes budeme mluvit o novem projektu a o terminech.",
    "Myslim, ze bychom meli plan jeste jednou prohlednout.",
    "Vysledky z minuleho tydne vypadaji mnohem lepe nez predtim.",
    "Muzes mi poslat ta cisla jeste pred schuzkou v patek?",
    "Porad mame dve otevrene otazky k novemu systemu.",
    "Zakaznik chce nejdriv videt ukazku, teprve potom podepise smlouvu.",
    "Podivam se do kalendare a odpoledne ti zavolam.",
    "Nas tym dokoncil praci bez jakychkoli potizi.",
]
_FI = [
    "Hyvaa huomenta kaikille, puhutaan tanaan uudesta projektista.",
    "Minun mielestani meidan pitaa siirtaa julkaisua kuukauden loppuun.",
    "Viime viikon tulokset nayttavat paljon paremmilta kuin ennen.",
    "Voitko lahettaa minulle luvut ennen perjantain kokousta?",
    "Meilla on viela kaksi avointa kysymysta uudesta jarjestelmasta.",
    "Asiakas haluaa nahda esittelyn ennen kuin han allekirjoittaa.",
    "Katson kalenterin ja soitan sinulle iltapaivalla.",
    "Tiimimme sai siirron valmiiksi ilman mitaan ongelmia.",
]
_CA = [
    "Bon dia a tothom, avui parlarem del projecte i dels terminis.",
    "Crec que hauriem de revisar el pla abans de final de mes.",
    "Els resultats de la setmana passada son molt millors que abans.",
    "Em pots enviar les xifres abans de la reunio de divendres?",
    "Encara tenim dues preguntes obertes sobre el nou sistema.",
    "El client vol veure una demostracio abans de signar el contracte.",
    "Miro el calendari i et truco aquesta tarda.",
    "El nostre equip ha acabat la feina sense cap problema.",
]


@dataclass(frozen=True)
class Voice:
    name: str  # short label used in RTTM files
    festival: str  # the voice_* function
    package: str  # the Debian package carrying it
    sentences: tuple[str, ...]


VOICES: tuple[Voice, ...] = (
    Voice("kal", "voice_kal_diphone", "festvox-kallpc16k", tuple(_EN)),
    Voice("slt", "voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts", tuple(_EN)),
    Voice("pc", "voice_pc_diphone", "festvox-itapc16k", tuple(_IT)),
    Voice("dita", "voice_czech_dita", "festvox-czech-dita", tuple(_CS)),
    Voice("mv", "voice_hy_fi_mv_diphone", "festvox-suopuhe-mv", tuple(_FI)),
    Voice("lp", "voice_lp_diphone", "festvox-italp16k", tuple(_IT)),
    Voice("machac", "voice_czech_machac", "festvox-czech-machac", tuple(_CS)),
    Voice("ona", "voice_upc_ca_ona_hts", "festvox-ca-ona-hts", tuple(_CA)),
    Voice("ked", "voice_ked_diphone", "festvox-kdlpc16k", tuple(_EN)),
    Voice("lj", "voice_suo_fi_lj_diphone", "festvox-suopuhe-lj", tuple(_FI)),
)


def available() -> bool:
    """Whether Festival's ``text2wave`` is installed (scripts/setup.sh installs it and the voices)."""
    return shutil.which("text2wave") is not None


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """One utterance, (N,) int16 at 16 kHz, leading/trailing silence trimmed; cached on disk."""
    key = hashlib.sha256(f"{voice.festival}\n{text}".encode()).hexdigest()[:20]
    cached = CACHE / f"{voice.name}-{key}.npy"
    if cached.exists():
        return np.load(cached)
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(
            ["text2wave", "-eval", f"({voice.festival})", "-o", str(raw)],
            input=text.encode("latin-1"),
            check=True,
            capture_output=True,
            timeout=120,
        )
        # Resample to 16 kHz mono (some voices are 32 kHz); trim silence at both ends.
        subprocess.run(
            [
                "sox",
                str(raw),
                "-r",
                str(SAMPLE_RATE),
                "-c",
                "1",
                "-b",
                "16",
                str(out),
                "silence",
                "1",
                "0.02",
                "0.5%",
                "reverse",
                "silence",
                "1",
                "0.02",
                "0.5%",
                "reverse",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        samples = read_wav(out)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, samples)
    return samples


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as fh:
        assert fh.getframerate() == SAMPLE_RATE and fh.getnchannels() == 1 and fh.getsampwidth() == 2
        return np.frombuffer(fh.readframes(fh.getnframes()), dtype=np.int16).copy()


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes(samples.astype(np.int16).tobytes())


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class Conversation:
    name: str
    samples: np.ndarray  # (N,) int16
    turns: tuple[Turn, ...]  # reference, in time order

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})

    def rttm(self) -> str:
        return "".join(
            f"SPEAKER {self.name} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
            for t in self.turns
        )


def conversation(
    seed: int, n_speakers: int, condition: str, *, n_turns: int = 10, name: str | None = None
) -> Conversation:
    """One mixed conversation; the same arguments give the same audio and RTTM."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}")
    if not 1 <= n_speakers <= len(VOICES):
        raise ValueError(f"1..{len(VOICES)} speakers")
    rng = np.random.default_rng([seed, n_speakers, CONDITIONS.index(condition)])
    voices = [VOICES[i] for i in rng.choice(len(VOICES), size=n_speakers, replace=False)]
    # Every speaker speaks at least twice; no one follows themself.
    order: list[int] = []
    while len(order) < n_turns:
        choices = [i for i in range(n_speakers) if not order or i != order[-1]]
        unused = [i for i in choices if i not in order]
        order.append(int(rng.choice(unused or choices)))
    pieces: list[tuple[int, np.ndarray]] = []
    turns: list[Turn] = []
    cursor = 0
    lead = int(0.5 * SAMPLE_RATE)
    for k, who in enumerate(order):
        voice = voices[who]
        # One or two sentences per turn.
        n_sent = 1 + int(rng.random() < 0.35)
        picks = rng.choice(len(voice.sentences), size=n_sent, replace=False)
        parts = [synthesize(voice, voice.sentences[int(i)]) for i in picks]
        gap = np.zeros(int(0.25 * SAMPLE_RATE), dtype=np.int16)
        audio = np.concatenate([p for pair in zip(parts, [gap] * len(parts), strict=True) for p in pair][:-1])
        if k == 0:
            start = lead
        elif condition == "pauses":
            start = cursor + int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)
        elif condition == "overlap" and rng.random() < 0.35:
            start = cursor - int(rng.uniform(0.2, 0.7) * SAMPLE_RATE)
        else:
            start = cursor + int(rng.uniform(0.05, 0.25) * SAMPLE_RATE)
        pieces.append((start, audio))
        turns.append(Turn(voice.name, start / SAMPLE_RATE, (start + len(audio)) / SAMPLE_RATE))
        cursor = max(cursor, start + len(audio))
    total = cursor + lead
    mix = np.zeros(total, dtype=np.float64)
    for start, audio in pieces:
        mix[start : start + len(audio)] += audio.astype(np.float64)
    mix += rng.normal(0.0, 20.0, size=total)  # a faint noise floor (-64 dBFS), as in a real room
    samples = np.clip(np.round(mix), -32768, 32767).astype(np.int16)
    label = name or f"{condition}-{n_speakers}spk-{seed:03d}"
    return Conversation(label, samples, tuple(sorted(turns, key=lambda t: t.start)))


def read_rttm(text: str) -> list[Turn]:
    turns = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, dur = float(parts[3]), float(parts[4])
            turns.append(Turn(parts[7], start, start + dur))
    return turns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for <name>.wav and <name>.rttm")
    parser.add_argument("--count", type=int, default=10, help="conversations per speaker count and condition")
    parser.add_argument("--speakers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--flac", action="store_true", help="write FLAC (smaller; for committed fixtures)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for condition in args.conditions:
        for n in args.speakers:
            for i in range(args.count):
                conv = conversation(args.seed + i, n, condition, n_turns=args.turns)
                wav = args.out / f"{conv.name}.wav"
                write_wav(wav, conv.samples)
                if args.flac:
                    subprocess.run(["sox", str(wav), str(wav.with_suffix(".flac"))], check=True, timeout=120)
                    wav.unlink()
                (args.out / f"{conv.name}.rttm").write_text(conv.rttm())
                print(f"{conv.name}: {len(conv.samples) / SAMPLE_RATE:.1f} s, speakers {conv.speakers}")


if __name__ == "__main__":
    main()
