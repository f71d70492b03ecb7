"""Label scoring: examples/s of `score` prediction against `generate`, and what a larger label set
costs `score` (issue 7, benchmark 4).

    python benchmarks/bench_label_scoring.py --json runs/bench/label_scoring.json
    python benchmarks/bench_label_scoring.py --quick

Models: tiny random Llamas (common.MODEL, hidden 256 x 4 layers; and, by default, also the 64 x 2
shape of the demo and tests), LoRA r=8 on q/v as in an evaluation during training, a tokenizer
trained on SST-5 and MELD train text plus their prompts (so label words are whole tokens, as in a
real LLM's vocabulary). Data: the first --examples of SST-5 test (5 labels) and of MELD test
(7 emotions), loaded with emoscale's corpus loaders; emoscale's evaluation batches (batch 32,
length-sorted, left-padded).

Sides, each a full pass over the examples, timed in wall and CPU time:
- score: PromptLMFamily.predict with eval.mode=score: one pass over each prompt with the k
  label answers beside it under a block-causal mask (the default where the model takes 4D masks).
- score on KV cache: the fallback route: the prompt once, then the k answers together on its
  KV cache.
- generate: PromptLMFamily.predict with eval.mode=generate: greedy decoding, eval.max_new_tokens=8
  (the default). A random model rarely says EOS, so all 8 tokens are decoded; a trained model stops
  after its answer (word + EOS), so generate's real cost lies between its one-token best case and
  this.
- naive: k separate forward passes of prompt + label answer (what score mode avoids); its scores
  are checked against score mode's.
Label-set size: MELD test with a prompt that does not list the labels
("Classify the emotion of the sentence: {text}") so the prompts are identical, scored with all 7
emotion words and with 2 of them (the longest answer kept, so the answers are as long).
With `--model FOLDER` (a real causal LM, e.g. SmolLM2-135M-Instruct from `emoscale convert gguf`;
issue 14): that model only, score / score on KV cache / generate on SST-5 and MELD (the naive and
label-set sides measure the algorithm, which the tiny models already show), 32 examples a corpus:

    OMP_NUM_THREADS=1 python benchmarks/bench_label_scoring.py --model runs/real_llm/smollm2-135m-instruct \
        --batch-size 32 --json runs/bench/label_scoring_smollm2.json        # and --batch-size 1

Runs alternate over all sides of a model (A B C ... A B C ...). Goals: score >= 3x generate;
score with 7 labels <= 1.3x the cost with 2.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import common
import torch

from emoscale.models import build_family
from emoscale.models.prompt_lm import PromptLMFamily

GOAL_SCORE_OVER_GENERATE = 3.0
GOAL_SEVEN_OVER_TWO = 1.3
FIXED_TEMPLATE = "Classify the emotion of the sentence: {text}"


def naive_scores(family, model, input_ids, attention_mask) -> torch.Tensor:
    """Log-likelihood of each label's answer by one forward pass of prompt + answer per label."""
    batch, width = input_ids.shape
    columns = []
    for answer in family.answers:
        tail = torch.tensor(answer, device=input_ids.device).expand(batch, -1)
        logits, _, _ = model(
            torch.cat([input_ids, tail], 1),
            torch.cat([attention_mask, torch.ones_like(tail)], 1),
        )
        # Prompts are left-padded: the last prompt token is column width-1 in every row.
        log_probs = logits[:, width - 1 : width - 1 + len(answer)].float().log_softmax(-1)
        columns.append(log_probs.gather(-1, tail[..., None]).squeeze(-1).sum(-1))
    return torch.stack(columns, 1)


def timed_pass(work, loader, examples: int) -> dict:
    start = common.now()
    with torch.no_grad():
        for batch in loader:
            work(batch)
    return {**common.rates(examples, start, common.now()), "examples": examples}


def families(corpora: dict, base: list[str], label_sets: bool = True) -> dict:
    """(data, mode) -> (family, corpus) for every scored or generated setting."""
    made = {}
    for corpus_name, corpus in corpora.items():
        dataset = f"data.dataset={'sst5' if corpus_name == 'SST-5' else 'meld'}"
        for mode in ("score", "generate"):
            config = common.config(*base, dataset, f"eval.mode={mode}")
            made[(corpus_name, mode)] = (build_family(config, corpus), corpus)
    if not label_sets:
        return made
    meld = corpora["MELD"]
    same_prompt = [*base, "data.dataset=meld", f'prompt.template="{FIXED_TEMPLATE}"']
    seven = build_family(common.config(*same_prompt), meld)
    longest = max(range(len(seven.answers)), key=lambda i: len(seven.answers[i]))
    two_words = [seven.label_words[longest], seven.label_words[0 if longest else 1]]
    # The same prompts scored against 2 of the 7 answers: only the cost is measured, so the family
    # is built directly (build_family rightly refuses 2 label words for a 7-label corpus).
    two_config = common.config(*same_prompt, f"prompt.labels=[{','.join(two_words)}]")
    two_info = dataclasses.replace(
        meld.info, label_names=tuple(two_words), label_words=tuple(two_words)
    )
    two = PromptLMFamily(two_config, two_info, seven.tokenizer)
    made[("MELD, same prompt", "score, 7 labels")] = (seven, meld)
    made[("MELD, same prompt", "score, 2 labels")] = (two, meld)
    return made


def bench_model(model_path, args, corpora: dict, real: bool = False) -> dict:
    """Every side on one model; `real`: a real LLM, without the naive and label-set sides."""
    base = [f"model.path={model_path}", "model.method=lora", f"eval.batch_size={args.batch_size}"]
    made = families(corpora, base, label_sets=not real)
    model = next(iter(made.values()))[0].build_model().eval()  # one model for every side
    sides, checks = {}, {}  # name -> (work on one batch, loader, examples)
    for (corpus_name, mode), (family, corpus) in made.items():
        test = corpus.split("test")[: args.examples]
        loader = family.dataloader(test, train=False, seed=42, split="test")
        sides[f"{corpus_name} | {mode}"] = (
            lambda batch, f=family: f.predict(model, batch),
            loader,
            len(test),
        )
        if mode.startswith("score"):  # the other route to the same scores, side by side
            sides[f"{corpus_name} | {mode} on KV cache"] = (
                lambda batch, f=family: f.label_scores(
                    model, batch["input_ids"], batch["attention_mask"], one_pass=False
                ),
                loader,
                len(test),
            )
        if mode != "score" or real:  # generate, and the label-set sizes: no naive side
            continue
        sides[f"{corpus_name} | naive ({len(family.answers)} passes)"] = (
            lambda batch, f=family: naive_scores(
                f, model, batch["input_ids"], batch["attention_mask"]
            ),
            loader,
            len(test),
        )
        first = next(iter(loader))
        with torch.no_grad():
            cached = family.label_scores(model, first["input_ids"], first["attention_mask"])
            naive = naive_scores(family, model, first["input_ids"], first["attention_mask"])
        checks[corpus_name] = (cached - naive).abs().max().item()
    print(f"model {model_path.name}: {len(sides)} sides, {args.examples} examples each")
    for work, loader, _ in sides.values():  # untimed: one batch each (first calls, lazy imports)
        with torch.no_grad():
            work(next(iter(loader)))
    runs = {
        name: lambda work=work, loader=loader, n=n: timed_pass(work, loader, n)
        for name, (work, loader, n) in sides.items()
    }
    results = common.alternate(runs, args.repeats)
    return {
        "model": {"path": str(model_path)},
        "runs": results,
        "answer_tokens": {
            " | ".join(key): [len(answer) for answer in family.answers]
            for key, (family, _) in made.items()
        },
        "label_words": {
            " | ".join(key): list(family.label_words) for key, (family, _) in made.items()
        },
        "max_abs_difference_score_vs_naive": checks,
    }


def summarize(name: str, measured: dict) -> tuple[list[list], dict]:
    """Table rows and the ratios of one model's results."""
    results = measured["runs"]
    median = {
        key: {side: common.median([r[key] for r in runs]) for side, runs in results.items()}
        for key in common.CLOCKS
    }
    rows, ratios = [], {}
    for corpus_name in ("SST-5", "MELD"):
        score = f"{corpus_name} | score"
        for side in [s for s in results if s.startswith(f"{corpus_name} |")]:
            ratio = {key: median[key][score] / median[key][side] for key in common.CLOCKS}
            if side != score:
                ratios[f"score over {side}"] = ratio
            rows.append(_row(name, side, results[side], median, ratio))
    for route in ("", " on KV cache") if "MELD, same prompt | score, 2 labels" in results else ():
        two = f"MELD, same prompt | score, 2 labels{route}"
        seven = f"MELD, same prompt | score, 7 labels{route}"
        for side in (two, seven):
            cost = {key: median[key][two] / median[key][side] for key in common.CLOCKS}
            rows.append(_row(name, side, results[side], median, cost, note="cost vs 2 labels"))
        ratios[f"cost 7 labels over 2{route}"] = {
            key: median[key][two] / median[key][seven] for key in common.CLOCKS
        }
    return rows, ratios


def _row(
    model: str, side: str, runs: list[dict], median: dict, ratio: dict, note: str = ""
) -> list:
    corpus_name, mode = side.split(" | ")
    shown = " / ".join(f"{ratio[key]:.2f}" for key in common.CLOCKS)
    return [model, corpus_name, mode, median["per_s"][side], median["per_cpu_s"][side], len(runs),
            f"{shown}{' (' + note + ')' if note else ''}"]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, help="test examples per corpus (default 128; quick 32)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="eval.batch_size (default 32)")
    parser.add_argument(
        "--models", help="comma-separated: default (256x4), small (64x2); default both, quick small"
    )
    parser.add_argument("--model", help="a real model folder instead (score vs generate only)")
    args = parser.parse_args(argv)
    common.start(args)
    args.examples = args.examples or (32 if args.quick or args.model else 128)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.models = args.models or ("small" if args.quick else "default,small")
    shapes = {"default": common.MODEL, "small": common.QUICK_MODEL}

    corpora = {"SST-5": common.load_sst5(args.data), "MELD": common.load_meld(args.data)}
    texts = common.tokenizer_texts(*corpora.values())
    measured, rows, ratios = {}, [], {}
    models = {}
    if args.model:
        models[Path(args.model).name] = Path(args.model).resolve()
    else:
        for name in args.models.split(","):
            label = "{hidden_size}x{num_layers}".format(**shapes[name])
            models[label] = common.tiny_model(args.cache_dir, texts, shapes[name])
    for label, model_path in models.items():
        measured[label] = bench_model(model_path, args, corpora, real=bool(args.model))
        measured[label]["model"].update(shapes.get(label, {}))
        model_rows, ratios[label] = summarize(label, measured[label])
        rows += model_rows

    table = common.markdown_table(
        ["model", "data", "mode", "examples/s (wall)", "examples/CPU-s", "runs",
         "score / this, wall / CPU"],
        rows,
    )  # fmt: skip
    verdicts = {}
    for label, ratio in ratios.items():
        over_generate = {c: ratio[f"score over {c} | generate"] for c in ("SST-5", "MELD")}
        seven = ratio.get("cost 7 labels over 2")
        verdicts[label] = {
            "score_over_generate": {
                c: {k: v >= GOAL_SCORE_OVER_GENERATE for k, v in r.items()}
                for c, r in over_generate.items()
            },
            "seven_over_two": {k: v <= GOAL_SEVEN_OVER_TWO for k, v in (seven or {}).items()},
        }
        sst, meld = over_generate["SST-5"], over_generate["MELD"]
        difference = max(measured[label]["max_abs_difference_score_vs_naive"].values(), default=0)
        table += (
            f"\n\n{label}: score / generate (wall, CPU): SST-5 {sst['per_s']:.2f}x,"
            f" {sst['per_cpu_s']:.2f}x; MELD {meld['per_s']:.2f}x, {meld['per_cpu_s']:.2f}x"
            f" (goal >= {GOAL_SCORE_OVER_GENERATE}x)."
        )
        if seven:
            table += (
                f" Score's cost with 7 labels / with 2: {seven['per_s']:.2f}x wall,"
                f" {seven['per_cpu_s']:.2f}x CPU (goal <= {GOAL_SEVEN_OVER_TWO}x)."
                f" |score - naive| <= {difference:.1e}."
            )
    table += (
        f"\n{args.examples} test examples per corpus, eval batch {args.batch_size}; ratios are of"
        " medians; a cost ratio is the inverse of the examples/s ratio."
    )
    return common.finish(
        args,
        "label_scoring",
        table,
        {
            "models": measured,
            "ratios": ratios,
            "goals": {
                "score_over_generate": GOAL_SCORE_OVER_GENERATE,
                "cost_seven_over_two": GOAL_SEVEN_OVER_TWO,
            },
            "goal_met": verdicts,
        },
    )


if __name__ == "__main__":
    main()
