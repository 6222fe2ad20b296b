"""``edgewise translate``: live speech-to-speech translation, file mode, audio devices.

    edgewise translate live --from en --to es [--asr auto|pocketsphinx|whisper-onnx]
                            [--mt auto|apertium|marian-onnx|none]
    edgewise translate file IN.wav --from en --to es --out DIR
    edgewise translate file IN.wav --from es --to en --out DIR   # Whisper base translates into English itself
    edgewise translate file IN.wav --from en --to en --out DIR   # transcription only

`--asr auto` (the default) runs Whisper when its model is in the store (`edgewise pull
whisper-tiny-en`, or `--from FOLDER` offline), else PocketSphinx; the output says which ran.
    edgewise translate devices
    edgewise translate quantize whisper-tiny-en     # INT8 copies of a neural engine's ONNX files
    edgewise translate quantize FOLDER --bits 4     # INT4 (MatMulNBits) copies; run them with --int4
"""
from __future__ import annotations

import argparse
import json
import sys

from apps.mobile_translation.engines import ASR_ENGINES, MT_ENGINES, EngineConfig


def _engine_args(p: argparse.ArgumentParser, asr_preset: str, beams: int) -> None:
    p.add_argument("--from", dest="src", default="en", help="spoken language (default en)")
    p.add_argument("--to", dest="tgt", default="es", help="target language (default es)")
    p.add_argument("--asr", choices=sorted(ASR_ENGINES), default="auto",
                   help="speech recogniser (default auto: Whisper when pulled, else PocketSphinx)")
    p.add_argument("--mt", choices=sorted(MT_ENGINES), default="auto",
                   help="translator (default auto: none for --to en through Whisper or --to = --from, else apertium)")
    p.add_argument("--asr-preset", choices=["fast", "accurate"], default=asr_preset,
                   help=f"pocketsphinx search settings (default {asr_preset}; fast: WER 0.25 at CPU RTF 0.19, "
                        "accurate: WER 0.21 at 0.47 on LJSpeech)")
    p.add_argument("--asr-model", default=None,
                   help="whisper-onnx: catalog name (whisper-tiny-en, whisper-base) or export folder")
    p.add_argument("--mt-model", default=None, help="marian-onnx: catalog name or export folder")
    p.add_argument("--beams", type=int, default=beams,
                   help=f"beam width of the neural decoders (default {beams}; 1 = greedy)")
    p.add_argument("--int8", action="store_true", default=None,
                   help="use the INT8 files made by `translate quantize` (INT8-only folders are used as shipped)")
    p.add_argument("--int4", action="store_true", help="use the INT4 files made by `translate quantize --bits 4`")
    p.add_argument("--json", action="store_true", help="print results as JSON")


def _config(args) -> EngineConfig:
    return EngineConfig(src=args.src, tgt=args.tgt, asr=args.asr, mt=args.mt, asr_preset=args.asr_preset,
                        asr_model=args.asr_model,
                        mt_model=args.mt_model, num_beams=args.beams,
                        quantized="int4" if args.int4 else args.int8)


def _describe(plan) -> str:
    asr = plan.asr if plan.asr != "whisper-onnx" else f"whisper-onnx ({plan.asr_model}, {plan.task})"
    return f"engines: asr {asr}, mt {plan.mt}, tts {plan.tts}"


def _cmd_file(args) -> int:
    from pathlib import Path

    from apps.mobile_translation.engines import SpeechStack
    from apps.mobile_translation.filemode import translate_file

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"input WAV {args.input} not found")
    with SpeechStack(_config(args)) as engines:
        if not args.json:
            print(_describe(engines.plan), file=sys.stderr, flush=True)
            for note in engines.plan.notes:
                print(f"note: {note}", file=sys.stderr, flush=True)
        res = translate_file(args.input, args.out, engines, use_vad=not args.no_vad)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
    else:
        for u in res.utterances:
            line = f"[{u.start:7.2f} - {u.end:7.2f}] {u.text}"
            print(line + (f"\n{'':19}{u.translation}" if res.tgt != res.src else ""))
        print(f"outputs: {', '.join(res.outputs.values())}")
        print(f"audio {res.audio_s:.1f} s, processed in {res.timings['total_s']:.2f} s (RTF {res.timings['rtf']:.2f})")
    return 0


def _device(v: str | None):
    return int(v) if v is not None and v.isdigit() else v


def _cmd_live(args) -> int:
    from apps.mobile_translation.live import LiveConfig, LiveTranslator

    cfg = LiveConfig(engines=_config(args), input_device=_device(args.input_device),
                     output_device=_device(args.output_device),
                     speak=not args.no_speak, decode_on_pause=args.decode_on_pause)

    def show(ev):
        if args.json:
            print(json.dumps(ev, ensure_ascii=False), flush=True)
        elif ev.get("event") == "partial":
            print(f"\r  … {ev['committed']} {ev['tentative']}"[-160:], end="", file=sys.stderr, flush=True)
        elif ev.get("event") == "utterance":
            print(f"\r{ev['text']}\n  -> {ev['translation']}   ({ev['latency_text_s']:.2f} s after end of speech)",
                  flush=True)
        elif ev.get("event") in ("lag", "device_error", "reopened"):
            print(f"[{ev['event']}] {ev.get('message', '')}", file=sys.stderr, flush=True)

    with LiveTranslator(cfg, on_event=show) as lt:
        if not args.json:
            print(_describe(lt.engines.plan), file=sys.stderr, flush=True)
            for note in lt.engines.plan.notes:
                print(f"note: {note}", file=sys.stderr, flush=True)
        try:
            lt.run(duration_s=args.duration)
        except KeyboardInterrupt:
            pass
        stats = lt.stats()
    print(json.dumps({"event": "stats", **stats}) if args.json else f"stats: {json.dumps(stats)}",
          file=sys.stdout if args.json else sys.stderr)
    return 0


def _cmd_devices(args) -> int:
    from sdk.pipeline import list_audio_devices

    devices = list_audio_devices()
    if args.json:
        print(json.dumps(devices, indent=2, default=str))
    else:
        for d in devices:
            d = d if isinstance(d, dict) else getattr(d, "__dict__", {"name": str(d)})
            print(f"{d.get('index', '?'):>3}  {d.get('name', '?')}  in={d.get('max_input_channels', '?')} "
                  f"out={d.get('max_output_channels', '?')}  {d.get('default_samplerate', '')}")
    return 0


def _cmd_quantize(args) -> int:
    from apps.mobile_translation.int8 import quantize_export

    done = quantize_export(args.model, force=args.force, bits=args.bits, block_size=args.block_size,
                           accuracy_level=args.accuracy_level)
    for src, dst in done.items():
        print(f"{src} -> {dst}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("translate", help="offline speech-to-speech translation (live, file)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="translate_command", metavar="SUBCOMMAND")

    live = sub.add_parser("live", help="microphone -> translated speech on the speaker")
    _engine_args(live, "fast", beams=1)
    live.add_argument("--input-device", default=None, help="PortAudio input device (index or name)")
    live.add_argument("--output-device", default=None, help="PortAudio output device (index or name)")
    live.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    live.add_argument("--no-speak", action="store_true", help="print only, do not synthesize speech")
    live.add_argument("--decode-on-pause", action=argparse.BooleanOptionalAction, default=True,
                      help="Whisper: start the final decode at the speaker's pause, so the text comes sooner "
                           "(default on; --no-decode-on-pause waits for the end-pointer)")
    live.set_defaults(func=_cmd_live)

    f = sub.add_parser("file", help="WAV in -> transcript + translation (JSON, SRT) + synthesized WAV")
    f.add_argument("input", help="input WAV file")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--no-vad", action="store_true", help="treat the whole file as one utterance")
    # beam 5 (faster-whisper's default): the same WER as greedy on all 22 LJ Speech files, fewer
    # errors on short utterances (the 4 shortest: 0 against 2), at twice the CPU
    _engine_args(f, "accurate", beams=5)
    f.set_defaults(func=_cmd_file)

    d = sub.add_parser("devices", help="list audio input/output devices")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_devices)

    q = sub.add_parser("quantize", help="INT8 or INT4 copies (sdk.compress) of a neural engine's fp32 ONNX files")
    q.add_argument("model", help="catalog name (whisper-tiny-en, opus-mt-en-es) or export folder")
    q.add_argument("--bits", type=int, choices=[8, 4], default=8,
                   help="8: dynamic INT8 (X_int8.onnx, run with --int8); 4: weight-only INT4 MatMulNBits "
                        "(X_int4.onnx, run with --int4), If-branches of the merged decoder included")
    q.add_argument("--block-size", type=int, default=32, help="--bits 4: weights per block along K (default 32)")
    q.add_argument("--accuracy-level", type=int, default=0, choices=range(5),
                   help="--bits 4: MatMulNBits compute precision (0 unset, 4 = int8 compute; default 0)")
    q.add_argument("--force", action="store_true", help="rebuild copies that already exist")
    q.set_defaults(func=_cmd_quantize)

    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
