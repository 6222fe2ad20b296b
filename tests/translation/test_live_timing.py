"""End of speech is stamped with the capture time of the last speech chunk, also after the
microphone was muted while the speaker played (the muted audio used to be counted as if the
end-pointer had heard it, so every utterance after a translation looked seconds late)."""
from __future__ import annotations

import numpy as np
from fakes import LevelVAD, SlowASR

from apps.mobile_translation.endpoint import EndpointConfig
from apps.mobile_translation.live_stages import Segmenter
from sdk.pipeline import AudioBlock

EP = EndpointConfig(pre_roll_ms=64, min_silence_ms=256, min_speech_ms=96, post_pad_ms=32)
SEC = 512 / 16000


def _chunks(levels, t0, start_index=0):
    return [AudioBlock(start_index + i, t0 + (i + 1) * SEC, np.full(512, lv, np.float32), 16000, {})
            for i, lv in enumerate(levels)]


def test_speech_end_is_the_capture_time_of_the_last_speech_chunk_across_a_mute():
    seg = Segmenter(LevelVAD(), EP, SlowASR(), streaming=False, emit=lambda *a, **k: None)
    first = _chunks([0.1] * 10 + [0.0] * 12, t0=100.0)
    muted = _chunks([0.3] * 60, t0=first[-1].t_capture, start_index=len(first))        # the speaker's echo
    second = _chunks([0.0] * 3 + [0.2] * 10 + [0.0] * 12, t0=muted[-1].t_capture, start_index=len(first) + 60)
    heard = [h for c in first for h in seg(c)]
    for c in muted[:5]:            # speech starts in the echo, then the gate mutes the rest
        heard += seg(c)
    for c in muted[5:]:
        seg.gated(c)
    heard += [h for c in second for h in seg(c)]
    assert len(heard) == 2
    assert heard[0].t_capture == first[9].t_capture           # the 10th chunk was the last one spoken
    assert heard[1].t_capture == second[12].t_capture         # not shifted by the 55 muted chunks
    assert np.all(np.abs(heard[1].utt.audio).max() <= 0.2 + 1e-6)   # none of the echo is in it
    assert seg.speech_s > 0
