"""Config loading: types, unknown keys and overrides are checked before any work."""

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config


def test_defaults_and_overrides():
    cfg = load_config("configs/default.yaml", ["train.epochs=3", "data.split.test=0.1", "seed=5"])
    assert (cfg.train.epochs, cfg.data.split.test, cfg.seed) == (3, 0.1, 5)
    assert cfg.data.split.validation == 0.05  # untouched keys keep the file's value


def test_yaml_booleans_are_accepted_for_true_false_choices():
    cfg = load_config(None, ["train.jit_compile=true", "train.deterministic=false"])
    assert cfg.train.jit_compile == "true"
    assert load_config(None, ["train.jit_compile=false"]).train.jit_compile == "false"


def test_int_is_accepted_for_float():
    assert load_config(None, ["train.dropout=0"]).train.dropout == 0.0


def test_exponent_without_a_dot_is_accepted_for_float(tmp_path):
    path = tmp_path / "exponent.yaml"
    path.write_text("train:\n  dropout: 1e-1\n")
    cfg = load_config(path, ["data.max_length_ratio=1e3", "decoding.length_penalty= 6E-1 "])
    assert (cfg.train.dropout, cfg.data.max_length_ratio) == (0.1, 1000.0)
    assert cfg.decoding.length_penalty == 0.6
    for text, shown in [("abc", "'abc'"), ("true", "True"), ("1e3x", "'1e3x'")]:
        with pytest.raises(ConfigError, match=f"train.dropout: expected float, got {shown}$"):
            load_config(None, [f"train.dropout={text}"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.no_such_key=1", "unknown key 'no_such_key' in train"),
        ("nosection.x=1", "unknown key 'nosection'"),
        ("train.epochs=many", "train.epochs: expected int, got 'many'"),
        ("train.epochs=true", "train.epochs: expected int, got True"),
        ("data.format=parquet", "data.format: 'parquet' is not one of"),
        ("train.epochs", "expected KEY=VALUE"),
        ("train=3", "train: expected a mapping"),
        ("train.average_last_epochs=0", "average_last_epochs=0: use 1 to train.epochs"),
        ("train.average_last_epochs=9", r"average_last_epochs=9: use 1 to train.epochs \(8\)"),
        ("evaluate.search=sampling", "evaluate.search: 'sampling' is not one of"),
        ("train.jit_compile=true", "jit_compile=true needs train.deterministic: false"),
        ("train.pack_length=4", r"pack_length=4: use 0 \(no packing\) or 8 to train.max_length"),
        ("train.pack_length=65", r"pack_length=65: .* train.max_length \(64\)"),
        ("train.pack_target_length=30", "pack_target_length=30: .* with train.pack_length set"),
        ("train.pack_target_length=4", r"pack_target_length=4: use 0 \(train.pack_length\)"),
        ("train.malloc_top_pad_mb=-1", r"malloc_top_pad_mb=-1: use 0 \(glibc's default\) to 2047"),
        ("train.malloc_top_pad_mb=4096", "malloc_top_pad_mb=4096: use 0"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/default.yaml", [override])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 2, "layers": 3}}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and "'layers'" in str(error.value)


def test_cli_rejects_unknown_key_before_any_work(tmp_path):
    workdir = tmp_path / "wd"
    completed = subprocess.run(
        [
            sys.executable,
            "run_pipeline.py",
            "--workdir",
            str(workdir),
            "--set",
            "train.no_such_key=1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "no_such_key" in completed.stderr
    assert not workdir.exists()


def test_every_shipped_config_loads():
    formats = {
        path.name: load_config(path).data.format for path in sorted(Path("configs").glob("*.yaml"))
    }
    assert formats == {
        "default.yaml": "builtin",
        "multi30k_en_de.yaml": "text",
        "smoke.yaml": "builtin",
    }


def test_preset_and_explicit_architecture_clash():
    assert load_config(None, ["train.preset=base"]).train.preset == "base"
    with pytest.raises(ConfigError, match="train.preset=base sets d_model"):
        load_config(None, ["train.preset=base", "train.d_model=64"])


def test_shared_embeddings_need_a_shared_vocabulary():
    with pytest.raises(ConfigError, match="needs tokenizer.shared_vocab"):
        load_config(None, ["train.share_embeddings=true"])
    with pytest.raises(ConfigError, match="one size"):
        load_config(None, ["tokenizer.shared_vocab=true", "tokenizer.target_vocab_size=10"])
    cfg = load_config(None, ["tokenizer.shared_vocab=true", "train.share_embeddings=true"])
    assert cfg.train.share_embeddings and cfg.tokenizer.shared_vocab


def test_beam_arg_flag_reaches_the_beam_options():
    from pipeline.runner import beam_args
    from run_pipeline import parse_args, resolve_config

    args = parse_args(["--beam-arg=--temp_location=/tmp/x", "--beam-arg=--num_workers=3"])
    options = beam_args(resolve_config(args))
    assert options[0] == "--runner=FnApiRunner"
    assert options[-2:] == ["--temp_location=/tmp/x", "--num_workers=3"]


def test_unreadable_config_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^configs: is a directory, not a config file$"):
        load_config("configs")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"model_name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 15\)$"):
        load_config(latin1)


def test_cli_reports_a_directory_config_with_exit_2(capsys):
    from run_pipeline import main

    assert main(["--config", "configs"]) == 2
    assert capsys.readouterr().err == "config error: configs: is a directory, not a config file\n"


@pytest.mark.parametrize("text", ["2024", "007", "on", "~", "*.tsv", "[x", "@x", "a: b"])
def test_set_on_a_string_field_keeps_the_text_as_written(text):
    cfg = load_config(None, [f"data.source_field={text}", f"data.path= {text} "])
    assert (cfg.data.source_field, cfg.data.path) == (text, text)
    if text.isalnum():
        assert load_config(None, [f"model_name={text}"]).model_name == text


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=*3", r"train.epochs=\*3: '\*3' is not .* \(found undefined alias '3'\)$"),
        ("train.epochs=*.5", r"train.epochs=\*.5: '\*.5' is not a YAML value \(expected alpha"),
        ("beam.extra_args=[x", r"beam.extra_args=\[x: '\[x' is not a YAML value \(expected"),
        ("seed=@x", r"seed=@x: '@x' is not a YAML value \(found character '@' that"),
    ],
)
def test_set_that_is_not_yaml_names_the_override(override, message):
    with pytest.raises(ConfigError, match=f"^--set {message}"):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("evaluate.batch_size=-1", "evaluate.batch_size=-1: use 1 or more"),
        ("evaluate.batch_size=0", "evaluate.batch_size=0: use 1 or more"),
        ("data.num_shards=-2", "data.num_shards=-2: use 1 or more"),
        ("data.num_shards=0", "data.num_shards=0: use 1 or more"),
        ("data.split.validation=-0.1", "data.split.validation=-0.1: use 0 to less than 1"),
        ("data.split.test=1", "data.split.test=1.0: use 0 to less than 1"),
        ("train.batch_tokens=-1", "train.batch_tokens=-1: use 1 or more"),
        ("data.builtin_pairs=-5", "data.builtin_pairs=-5: use 1 or more"),
        ("decoding.beam_size=0", "decoding.beam_size=0: use 1 or more"),
        ("data.max_rejected_fraction=-1", "data.max_rejected_fraction=-1.0: use 0 to 1"),
        ("data.max_rejected_fraction=1.5", "data.max_rejected_fraction=1.5: use 0 to 1"),
        ("data.max_length_ratio=0.5", "data.max_length_ratio=0.5: use 1 or more"),
        ("data.source_column=-1", "data.source_column=-1: use 0 or more"),
        ("train.dropout=1", "train.dropout=1.0: use 0 to less than 1"),
        ("train.label_smoothing=-0.1", "train.label_smoothing=-0.1: use 0 to less than 1"),
        ("train.dropout=.nan", "train.dropout=nan: use a finite number"),
        ("decoding.length_penalty=.inf", "decoding.length_penalty=inf: use a finite number"),
        ("decoding.length_penalty=-1", r"length_penalty=-1.0: use 0 \(no penalty\) or more"),
        ("train.warmup_steps=-1", r"train.warmup_steps=-1: use 0 \(no warmup\) or more"),
        ("train.max_length=2", "train.max_length=2: use 3 or more"),
        ("train.epochs=0", "train.epochs=0: use 1 or more"),
        ("train.shuffle_buffer=0", "train.shuffle_buffer=0: use 1 or more"),
        ("train.checkpoint_every_steps=-1", r"every_steps=-1: use 0 \(epochs only\) or more"),
        ("tokenizer.source_vocab_size=4", "tokenizer.source_vocab_size=4: use 5 or more"),
        ("beam.direct_num_workers=-1", r"workers=-1: use 0 \(one per CPU core\) or more"),
        ("seed=-1", "seed=-1: use 0 to 4294967295"),
        ("export.min_bleu=101", "export.min_bleu=101.0: use 0 to 100"),
        ("export.latency_runs=0", "export.latency_runs=0: use 1 or more"),
        ("export.keep_versions=-1", r"keep_versions=-1: use 0 \(keep every version\) or more"),
        ("train.num_heads=200", r"train.num_heads=200: use a divisor of train.d_model \(128\)"),
        ("train.num_heads=3", r"train.num_heads=3: use a divisor of train.d_model \(128\)"),
    ],
)
def test_out_of_range_values_stop_before_any_work(override, message):
    with pytest.raises(ConfigError, match=f"^defaults with --set overrides: .*{message}$"):
        load_config(None, [override])


def test_split_fractions_must_leave_train_rows():
    with pytest.raises(ConfigError, match=r"validation \+ data.split.test = 1: use less than 1"):
        load_config(None, ["data.split.validation=0.5", "data.split.test=0.5"])
    assert load_config(None, ["data.split.validation=0.5", "data.split.test=0.4"]).data.split


def test_range_edges_and_zero_settings_are_accepted():
    edges = [
        "data.max_rejected_fraction=1",
        "data.max_length_ratio=1",
        "train.dropout=0",
        "train.warmup_steps=0",
        "train.checkpoint_every_steps=0",
        "train.num_bleu_sentences=0",
        "beam.direct_num_workers=0",
        "decoding.max_extra_tokens=0",
        "decoding.length_penalty=0",
        "export.keep_versions=0",
        "export.min_bleu=100",
        "seed=4294967295",
    ]
    cfg = load_config(None, edges)
    assert (cfg.data.max_rejected_fraction, cfg.export.keep_versions, cfg.seed) == (1, 0, 2**32 - 1)


def test_out_of_range_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("evaluate:\n  batch_size: -1\n")
    with pytest.raises(ConfigError, match=f"^{path}: evaluate.batch_size=-1: use 1 or more$"):
        load_config(path)


def test_every_numeric_key_has_a_range():
    from pipeline.config import _RANGES, PipelineConfig

    def numeric_keys(cls, prefix=""):
        for name, hint in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(hint):
                yield from numeric_keys(hint, f"{prefix}{name}.")
            elif hint in (int, float):
                yield f"{prefix}{name}"

    checked_with_other_keys = {
        "train.pack_length",
        "train.pack_target_length",
        "train.average_last_epochs",
    }
    assert set(numeric_keys(PipelineConfig)) == set(_RANGES) | checked_with_other_keys


def test_cli_rejects_an_out_of_range_value_with_exit_2(tmp_path, capsys):
    from run_pipeline import main

    workdir = tmp_path / "wd"
    assert main(["--workdir", str(workdir), "--set", "evaluate.batch_size=-1"]) == 2
    assert capsys.readouterr().err == (
        "config error: configs/default.yaml with --set overrides: "
        "evaluate.batch_size=-1: use 1 or more\n"
    )
    assert not workdir.exists()


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "x y"])
def test_model_name_must_be_a_plain_directory_name(name):
    with pytest.raises(ConfigError, match=r"model_name=.*: use letters, digits"):
        load_config(None, [f"model_name={name}"])
    assert load_config(None, ["model_name=en-de_v2.1"]).model_name == "en-de_v2.1"
