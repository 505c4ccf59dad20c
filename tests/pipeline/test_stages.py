"""What each stage's fingerprint covers: the settings that can change its artifact."""

import dataclasses

from pipeline.config import PipelineConfig
from pipeline.stages import STAGES

BY_NAME = {stage.name: stage for stage in STAGES}


def _config(**sections) -> PipelineConfig:
    cfg = PipelineConfig()
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


def _same(stage: str, a: PipelineConfig, b: PipelineConfig) -> bool:
    return BY_NAME[stage].config(a) == BY_NAME[stage].config(b)


def test_export_ignores_keep_versions_but_not_min_bleu():
    base = PipelineConfig()
    assert _same("export", base, _config(export={"keep_versions": 9}))
    # blessing.json in the export artifact records min_bleu and decides the push.
    assert not _same("export", base, _config(export={"min_bleu": 30.0}))
    assert not _same("export", base, _config(export={"latency_runs": 5}))
    assert not _same("export", base, _config(decoding={"beam_size": 2}))
    assert not _same("export", base, dataclasses.replace(base, model_name="other"))


def test_builtin_ingest_ignores_the_keys_of_file_formats():
    base = PipelineConfig()
    for key, value in [
        ("download_dir", "/tmp/downloads"),
        ("source_field", "translation.en"),
        ("path", "corpus.tsv"),
        ("source_path", "corpus.en"),
        ("source_column", 2),
        ("reject_source_in_other_split", False),
    ]:
        assert _same("ingest", base, _config(data={key: value})), key
    for key, value in [("builtin_pairs", 10), ("max_words", 5), ("num_shards", 3)]:
        assert not _same("ingest", base, _config(data={key: value})), key
    assert not _same("ingest", base, dataclasses.replace(base, seed=1))


def test_file_ingest_reads_its_own_format_keys_only():
    jsonl = {"format": "jsonl", "path": "corpus.jsonl"}
    base = _config(data=jsonl)
    assert not _same("ingest", base, _config(data={**jsonl, "source_field": "translation.en"}))
    assert not _same("ingest", base, _config(data={**jsonl, "test_path": "test.jsonl"}))
    for key, value in [("download_dir", "/d"), ("source_column", 2), ("builtin_pairs", 10)]:
        assert _same("ingest", base, _config(data={**jsonl, key: value})), key
    assert _same("ingest", base, dataclasses.replace(base, seed=1))


def test_evaluate_reads_beam_settings_only_when_it_scores_beam_search():
    base = PipelineConfig()
    assert _same("evaluate", base, _config(decoding={"beam_size": 8, "length_penalty": 1.0}))
    assert not _same("evaluate", base, _config(decoding={"max_extra_tokens": 2}))
    for evaluate in ({"search": "beam"}, {"score_both": True}):
        assert not _same(
            "evaluate",
            _config(evaluate=evaluate),
            _config(evaluate=evaluate, decoding={"beam_size": 8}),
        )


def test_train_keeps_every_key_its_hparams_log_records():
    assert not _same("train", PipelineConfig(), _config(train={"malloc_top_pad_mb": 0}))
