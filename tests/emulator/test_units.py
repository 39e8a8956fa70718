"""Unit tests of the emulator's pieces: infotexts, names, configuration, the FIFO lock."""

from __future__ import annotations

import threading
import time

import pytest

from stablenew.emulator import EmulatorConfig, catalog
from stablenew.emulator.faults import FaultControl, FaultSettings
from stablenew.emulator.progress import FifoLock, ServerStoppingError
from stablenew.emulator.schema import InvalidValueError, to_bool, to_int
from stablenew.runtime.settings import ConfigError
from stablenew.sdwebui.adetailer_tabs import ordinal_suffix
from stablenew.sdwebui.infotext import create_infotext, parse_infotext, parse_parameters, quote


def test_quote_only_values_that_need_it() -> None:
    assert quote(7.0) == "7.0" and quote("plain text") == "plain text"
    assert quote("a, b") == '"a, b"' and quote("k: v") == '"k: v"'
    assert quote("two\nlines") == '"two\\nlines"' and quote("ü, x") == '"ü, x"'


def test_create_infotext() -> None:
    params = {"Steps": 20, "Sampler": "Euler", "Skipped": None, "Note": "a, b"}
    assert create_infotext("p", "", params) == 'p\nSteps: 20, Sampler: Euler, Note: "a, b"'
    assert create_infotext("p", "n", {"Steps": 1}) == "p\nNegative prompt: n\nSteps: 1"
    assert create_infotext("", "", {"Steps": 1}) == "Steps: 1"


def test_sampler_resolution() -> None:
    sampler, scheduler = catalog.resolve_sampler("DPM++ 2M SDE Karras", None)
    assert (sampler.name, scheduler.label) == ("DPM++ 2M SDE", "Karras")
    sampler, scheduler = catalog.resolve_sampler(None, "Exponential")
    assert (sampler.name, scheduler.name) == ("DPM++ 2M", "exponential")
    sampler, scheduler = catalog.resolve_sampler("euler a", "bogus")
    assert (sampler.name, scheduler.name) == ("DPM++ 2M", "automatic")


def test_checkpoint_lookup() -> None:
    base = catalog.find_checkpoint("sd_xl_base_1.0")
    assert base is not None and catalog.find_checkpoint(base.title) is base
    assert catalog.find_checkpoint("31e35c80fc") is base
    assert catalog.find_checkpoint("sd_xl") is None
    assert catalog.closest_checkpoint("sd_xl_refiner") is not None


def test_ordinal_suffixes() -> None:
    assert [ordinal_suffix(n) for n in range(5)] == ["", " 2nd", " 3rd", " 4th", " 5th"]
    assert ordinal_suffix(10) == " 11th" and ordinal_suffix(20) == " 21st"


def test_pydantic_like_coercion() -> None:
    assert to_int("12") == 12 and to_int(True) == 1 and to_int(3.9) == 3
    assert to_bool("yes") is True and to_bool(0) is False
    with pytest.raises(InvalidValueError):
        to_int("1.5")
    with pytest.raises(InvalidValueError):
        to_bool("maybe")


def test_config_flags_beat_environment_beat_defaults() -> None:
    env = {"STABLENEW_EMULATOR_STEP_SECONDS": "0.5", "STABLENEW_EMULATOR_ADDR": "127.0.0.1:9",
           "STABLENEW_EMULATOR_HANG_NEXT": "2", "STABLENEW_EMULATOR_OOM_MATCH": "entry 3"}
    config = EmulatorConfig.load({"step_seconds": "0.1", "api_auth": "a:b,c:d:e"}, env)
    assert config.step_seconds == 0.1 and config.address == "127.0.0.1:9"
    assert config.api_auth == (("a", "b"), ("c", "d:e"))
    assert config.faults == FaultSettings(hang_next=2, oom_match="entry 3")
    assert config.model_load_seconds == 0.5 and config.start_delay_seconds == 0
    assert EmulatorConfig.load({}, {}) == EmulatorConfig()


@pytest.mark.parametrize(("name", "value"), [
    ("STABLENEW_EMULATOR_STEP_SECONDS", "fast"), ("STABLENEW_EMULATOR_STEP_SECONDS", "-1"),
    ("STABLENEW_EMULATOR_ADDR", "7860"), ("STABLENEW_EMULATOR_API_AUTH", ":x"),
    ("STABLENEW_EMULATOR_FAIL_NEXT", "x"), ("STABLENEW_EMULATOR_LOG_LEVEL", "LOUD"),
    ("STABLENEW_EMULATOR_CHECKPOINT", "nope.safetensors"),
])
def test_bad_settings_name_their_source(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        EmulatorConfig.load({}, {name: value})


def test_fifo_lock_serves_in_arrival_order() -> None:
    lock = FifoLock()
    order: list[int] = []
    lock.acquire()
    threads = []
    for number in range(6):
        thread = threading.Thread(target=_take, args=(lock, order, number))
        thread.start()
        threads.append(thread)
        while lock.depth() != number + 2:
            time.sleep(0.001)
    lock.release()
    for thread in threads:
        thread.join(timeout=10)
    assert order == list(range(6))


def _take(lock: FifoLock, order: list[int], number: int) -> None:
    with lock.held():
        order.append(number)


def test_closed_fifo_lock_refuses_waiters() -> None:
    lock = FifoLock()
    lock.acquire()
    errors: list[Exception] = []

    def wait() -> None:
        try:
            lock.acquire()
        except ServerStoppingError as error:
            errors.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while lock.depth() != 2:
        time.sleep(0.001)
    lock.close()
    waiter.join(timeout=10)
    assert len(errors) == 1


def test_fault_matching_and_counting() -> None:
    control = FaultControl(FaultSettings(fail_next=1, fail_match="two", oom_next=-1,
                                         oom_match="img2img"))
    assert control.take("txt2img", "entry one") is None
    assert control.take("txt2img", "entry two") == "fail"
    assert control.take("txt2img", "entry two") is None
    assert control.take("img2img", "x") == "oom" and control.take("img2img", "y") == "oom"
    assert control.snapshot()["injected"] == {"hang": 0, "oom": 2, "fail": 1}


def test_an_infotext_parses_back_to_what_was_written() -> None:
    params = {"Steps": 20, "Sampler": "Euler a", "Schedule type": "Karras",
              "ADetailer prompt": 'a face, "smiling": yes', "Hires upscale": 2.0,
              "Version": "v1.10.1"}
    text = create_infotext("line one\nline two", "ugly, blurry", params)
    assert parse_parameters(text) == {key: str(value) for key, value in params.items()}
    assert parse_infotext(text) == {"Prompt": "line one\nline two",
                                    "Negative prompt": "ugly, blurry",
                                    **{key: str(value) for key, value in params.items()}}


def test_text_without_a_parameters_line_has_no_parameters() -> None:
    assert parse_parameters("just a prompt") == {}
    assert parse_infotext("just a prompt") == {"Prompt": "just a prompt", "Negative prompt": ""}
    assert parse_infotext("") == {}
