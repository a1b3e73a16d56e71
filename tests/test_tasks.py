"""Tasks measured the way the field measures them: ROUGE equal to rouge-score, option scoring,
label masking, and decoder tasks end to end on a tiny Llama."""

from __future__ import annotations

import pytest
import torch
from rouge_score import rouge_scorer

from harness.cli import main
from harness.config import load_suite
from harness.errors import UserError
from harness.metrics import load
from harness.models import BUILTIN_MODELS
from harness.records.store import FileRecordStore
from harness.tasks.generative import IGNORE, option_scores, sft_example
from harness.tasks.qa import answer_index, options_of

PAIRS = [("the cat sat on the mat", "a cat was sitting on the mat"),
         ("Bob will buy milk on the way home.", "Anna asks Bob to buy milk. Bob agrees to do it."),
         ("nothing in common", "entirely different words here"),
         ("The order arrived broken. A refund is offered.", "The order arrived broken. The agent offers a refund.")]


def test_rouge_equals_rouge_score_reference():
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    ours = load("rouge").compute(predictions=preds, references=refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for kind in ("rouge1", "rouge2", "rougeL"):
        expected = sum(scorer.score(r, p)[kind].fmeasure for p, r in PAIRS) / len(PAIRS)
        assert ours[kind] == pytest.approx(expected, abs=1e-12)
    # rougeLsum: one sentence per line, as the reference scorer expects it
    lsum = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    p, r = PAIRS[3]
    expected = lsum.score("The order arrived broken.\nThe agent offers a refund.",
                          "The order arrived broken.\nA refund is offered.")["rougeLsum"].fmeasure
    assert load("rouge").compute(predictions=[p], references=[r])["rougeLsum"] == pytest.approx(expected)


class PrefersToken(torch.nn.Module):
    """A stand-in LM whose next-token distribution always favours one token."""

    def __init__(self, token: int, vocab: int = 16):
        super().__init__()
        self.token, self.vocab = token, vocab

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 4.0

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_option_scorer_picks_the_likeliest_option_length_normalized():
    model = PrefersToken(7)
    prompt = [1, 2, 3]
    scores = option_scores(model, prompt, [[3, 3], [7, 7], [7, 3, 3]], "cpu")
    assert max(range(3), key=scores.__getitem__) == 1
    # a long option made of likely tokens is not beaten by a short unlikely one, nor penalized for length
    scores = option_scores(model, prompt, [[7, 7, 7, 7, 7, 7], [5]], "cpu")
    assert scores[0] > scores[1]
    assert option_scores(model, prompt, [[7]], "cpu")[0] == pytest.approx(option_scores(model, prompt, [[7, 7, 7]], "cpu")[0])


def test_log_loss_of_the_true_label_equals_scikit_learns():
    from sklearn.metrics import log_loss

    from harness.tasks.classification import choice_scores, scores, true_label_losses

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.7], [-3.0, 3.0], [0.0, 0.0], [1.0, 4.0]])
    refs = [0, 0, 1, 1, 0]
    losses = true_label_losses(logits, refs)
    expected = log_loss(refs, torch.softmax(logits, -1).numpy(), labels=[0, 1])
    got = scores(logits.argmax(-1).tolist(), refs, losses)
    assert got["log_loss"] == pytest.approx(expected, rel=1e-6)
    assert got["se:log_loss"] == pytest.approx(torch.tensor(losses).std().item() / 5 ** 0.5, rel=1e-6)
    # a decoder's options (rows may differ in length, lettered answers): a softmax over each row's own
    rows, answers = [[-1.0, -2.0, -0.5], [-0.2, -3.0], [-0.1, -0.1]], [2, 1, 0]
    out = choice_scores(rows, answers)
    by_row = [-torch.log_softmax(torch.tensor(r), -1)[a].item() for r, a in zip(rows, answers)]
    assert out["log_loss"] == pytest.approx(sum(by_row) / 3, rel=1e-6)
    assert out["accuracy"] == pytest.approx(2 / 3)  # a tie goes to the first option


def test_answers_and_options_parse():
    assert options_of([]) == ["yes", "no", "maybe"]
    assert options_of("Pancreas | Liver") == ["Pancreas", "Liver"]
    assert answer_index("B", ["x", "y", "z"]) == 1
    assert answer_index("Maybe", ["yes", "no", "maybe"]) == 2
    with pytest.raises(ValueError):
        answer_index("E", ["a", "b"])


def test_label_masking_leaves_the_prompt_out_of_the_loss():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(BUILTIN_MODELS.get("tiny-llama").locate())
    ex = sft_example(tok, "the film was good . summarize", "a good film", max_length=64)
    answer = tok("a good film", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n_prompt = len(ex["input_ids"]) - len(answer)
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == answer == ex["input_ids"][n_prompt:]
    # too long: the prompt is cut from its start, the answer survives whole
    long = sft_example(tok, "word " * 200, "a good film", max_length=32)
    assert len(long["input_ids"]) == 32 and long["labels"][-len(answer):] == answer


DECODER_SUITE = """\
name: gen
models:
  - source: builtin:tiny-llama
    max_length: 96
tasks:
  - name: dialogsum
    kind: summarization
    data: {builtin: dialogsum-mini, test_size: 12}
    train_sizes: [16, 48]
  - name: medqa
    kind: qa
    data: {builtin: medqa-mini, train_size: 48, test_size: 20}
methods:
  - name: lora
search: {trials_per_cell: 1, strategy: none}
training: {max_steps: 4, batch_size: 8, eval_batch_size: 8}
references: false
"""


@pytest.mark.e2e
def test_decoder_tasks_end_to_end_with_train_sizes(write_suite, tmp_path, capsys):
    suite = write_suite(DECODER_SUITE)
    code = main(["run", str(suite), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert code == 0
    records = {r.task: r for r in FileRecordStore(tmp_path / "r" / "gen").load_all()}
    assert sorted(records) == ["dialogsum@16", "dialogsum@48", "medqa"]
    for name in ("dialogsum@16", "dialogsum@48"):
        r = records[name]
        assert r.status == "complete", r.reason
        assert r.objective_metric == "rougeL" and set(r.metrics) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
        assert r.throughput.generation_tokens_per_s and r.throughput.generation_tokens_per_s > 0
    assert records["dialogsum@16"].config["task"]["data"]["train_size"] == 16
    assert records["medqa"].status == "complete" and 0 <= records["medqa"].metrics["accuracy"] <= 1


def test_summarization_on_an_encoder_is_rejected(write_suite):
    text = DECODER_SUITE.replace("builtin:tiny-llama", "builtin:tiny-bert")
    with pytest.raises(UserError) as info:
        load_suite(write_suite(text))
    assert "model tiny-bert cannot run task dialogsum: the summarization task needs a decoder LM" in str(info.value)


@pytest.mark.e2e
def test_qa_on_an_encoder_classifies_the_answers(write_suite, tmp_path, capsys):
    text = ("name: qaenc\nmodels: [{source: 'builtin:tiny-bert', max_length: 64}]\n"
            "tasks: [{name: medqa, kind: qa, data: {builtin: medqa-mini, train_size: 48, test_size: 20}}]\n"
            "methods: [{name: lora}]\nsearch: {trials_per_cell: 1, strategy: none}\ntraining: {max_steps: 4, batch_size: 8}\n"
            "references: false\n")
    code = main(["run", str(write_suite(text)), "--quiet", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert code == 0
    [record] = FileRecordStore(tmp_path / "r" / "qaenc").load_all()
    assert record.status == "complete" and 0 <= record.metrics["accuracy"] <= 1
    # yes/no/maybe and the letters A-D: one class per distinct answer in the training data
    assert record.trainable_params > 0 and record.config["task"]["kind"] == "qa"


@pytest.mark.parametrize("method", ["none", "lora", "prompt_tuning"])
def test_shared_prompt_cache_scores_equal_the_full_recompute(method):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.tasks import generative

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BUILTIN_MODELS.get("tiny-llama").locate()).eval()
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    elif method == "prompt_tuning":
        model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert generative._can_share_prompt_cache(model) == (method != "prompt_tuning")
    prompt = list(range(5, 40))
    options = [[50, 51], [60], [70, 71, 72, 73], [80, 81, 82]]
    shared = option_scores(model, prompt, options, "cpu")
    full = generative._option_scores_full(model, prompt, options, "cpu")
    assert shared == pytest.approx(full, abs=1e-4)
    assert max(shared) - min(shared) > 0.05  # the options really differ, so the equality above means something
    single = option_scores(model, prompt, [[60], [61]], "cpu")  # one-token options: the prompt pass alone
    assert single == pytest.approx(generative._option_scores_full(model, prompt, [[60], [61]], "cpu"), abs=1e-4)


VERBALIZER_SUITE = """\
name: verb
models:
  - source: builtin:tiny-llama
    max_length: 48
  - source: builtin:tiny-bert
    max_length: 48
tasks:
  - name: sentiment-words
    kind: classification
    head: verbalizer
    models: [tiny-llama]
    data: {builtin: sentiment, train_size: 64, validation_size: 16, test_size: 24}
methods:
  - name: lora
search: {trials_per_cell: 1, strategy: none}
training: {max_steps: 4, batch_size: 8, eval_batch_size: 8, eval_every_steps: 2}
references: false
"""


@pytest.mark.e2e
def test_verbalizer_family_scores_label_words(write_suite, tmp_path):
    """The task family added in one file (harness/tasks/verbalizer.py): tokenized data, then a run."""
    import datasets
    from transformers import AutoTokenizer

    from harness.tasks import family_of

    family = family_of("classification", "verbalizer")
    assert family.key == "classification/verbalizer" and family.decoder_head == "causal_lm"
    tok = AutoTokenizer.from_pretrained(BUILTIN_MODELS.get("tiny-llama").locate())
    split = datasets.Dataset.from_dict({"text": ["a good film", "a bad film"], "label": ["positive", "negative"]})
    data = family.tokenize(datasets.DatasetDict(train=split, validation=split, test=split), tok, 48,
                           ["negative", "positive"], "causal_lm")
    test = data["test"][0]
    assert test["option_ids"] == [tok("negative", add_special_tokens=False)["input_ids"],
                                  tok("positive", add_special_tokens=False)["input_ids"]]
    assert test["answer_index"] == 1 and data["test"][1]["answer_index"] == 0
    train = data["train"][0]
    answer = tok("positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [t for t in train["labels"] if t != IGNORE] == answer  # the loss is on the label word only

    code = main(["run", str(write_suite(VERBALIZER_SUITE)), "--quiet", "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "p")])
    assert code == 0
    [record] = FileRecordStore(tmp_path / "r" / "verb").load_all()  # tasks[0].models left MiniLM's cell out
    assert record.model == "tiny-llama" and record.status == "complete", record.reason
    assert set(record.metrics) == {"accuracy", "macro_f1", "log_loss"} and record.metrics["log_loss"] > 0
    assert [h["step"] for h in record.history if "validation_accuracy" in h] == [2, 4]


def test_verbalizer_needs_a_decoder_and_unknown_heads_are_named(write_suite):
    text = VERBALIZER_SUITE.replace("    models: [tiny-llama]\n", "")
    with pytest.raises(UserError) as info:
        load_suite(write_suite(text))
    assert ("model tiny-bert cannot run task sentiment-words: the classification with head verbalizer task needs "
            "a decoder LM") in str(info.value)
    with pytest.raises(UserError) as info:
        load_suite(write_suite(VERBALIZER_SUITE.replace("head: verbalizer", "head: verbaliser")))
    assert ("tasks[0].head: task kind classification has no head 'verbaliser'; valid: sequence_classification, "
            "verbalizer") in str(info.value)
