"""The catalogue of pw3_decoding: realistic wrong answers and correct answers written differently, one entry per answer.

Each entry is the source of one exercise cell of the notebook (keyed by the cell's grade_id, which is the exercise's
name). Wrong answers must lose points in their own exercise only, with a message that contains `expect`; correct
answers must get full marks; the public checks must flag the wrong answers (before hand-in) and never a correct one.

To add a mistake seen in real submissions: copy the student's cell into a new `wrong(...)` entry, with the words its
failure message must contain. If no check catches it, add a check (or a known variant) in the notebook's checks, in
source_text/pw3_decoding/notebook.py.
"""

from coursekit.catalogue import correct, wrong



def _temperature(body):
    return f"def apply_temperature(logits, temperature):\n{body}"


def _top_k(body):
    return f"def top_k_filter(logits, k):\n{body}"


def _top_p(body):
    return f"def top_p_filter(logits, p):\n{body}"


def _top_p_sorted(remove, put_back="remove_sorted.scatter(-1, order, remove_sorted)", fill='float("-inf")'):
    """A top-p filter written the usual way, with one knob per step."""
    return _top_p(f'''    probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
    cumulative = torch.cumsum(probs, dim=-1)
    remove_sorted = {remove}
    remove = {put_back}
    return logits.masked_fill(remove, {fill})
''')


def _sample(pick="torch.multinomial(probs, num_samples=1, generator=generator)", context="input_ids[:, -model.seq_len:]",
            position="-1", eval_line="    model.eval()\n", decorator="@torch.no_grad()\n",
            filters='''        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probs = F.softmax(logits, dim=-1)
'''):
    return f'''{decorator}def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
{eval_line}    for _ in range(max_new_tokens):
        logits = model({context})[:, {position}, :]
{filters}        next_token = {pick}
        input_ids = torch.cat((input_ids, next_token), dim=1)
    return input_ids
'''


def _beam(init="beams, scores = input_ids, torch.zeros(1)", score="scores[:, None] + log_probs",
          keep="min(num_beams, candidates.numel())", result="beams[:1]", context="beams[:, -model.seq_len:]"):
    return f'''@torch.no_grad()
def beam_search(model, input_ids, num_beams, max_new_tokens):
    model.eval()
    {init}
    for _ in range(max_new_tokens):
        log_probs = F.log_softmax(model({context})[:, -1, :], dim=-1)
        V = log_probs.size(-1)
        candidates = ({score}).view(-1)
        scores, flat = torch.topk(candidates, {keep})
        beams = torch.cat([beams[flat // V], (flat % V).unsqueeze(1)], dim=1)
    return {result}
'''


ENTRIES = [
    # ---- apply_temperature -------------------------------------------------------------------------------------
    wrong("apply_temperature: multiplied instead of divided", "apply_temperature",
          _temperature("    return logits * temperature\n"), expect="multiplied by the temperature"),
    wrong("apply_temperature: divides the caller's logits in place", "apply_temperature",
          _temperature("    logits /= temperature\n    return logits\n"), expect="changed the logits it was given"),
    wrong("apply_temperature: returns probabilities", "apply_temperature",
          _temperature("    return F.softmax(logits / temperature, dim=-1)\n"), expect="probabilities (a softmax)"),
    wrong("apply_temperature: probabilities divided by the temperature", "apply_temperature",
          _temperature("    probs = torch.softmax(logits, dim=-1)\n    return probs / temperature\n"),
          expect="divide the logits instead"),
    wrong("apply_temperature: in place, returns nothing", "apply_temperature",
          _temperature("    logits /= temperature\n"), expect="returns None"),
    correct("apply_temperature: torch.div", "apply_temperature", _temperature("    return torch.div(logits, temperature)\n")),
    correct("apply_temperature: times 1/T, on a copy", "apply_temperature",
            _temperature("    return logits.clone().mul_(1.0 / temperature)\n")),

    # ---- top_k_filter ------------------------------------------------------------------------------------------
    wrong("top_k_filter: keeps k - 1 (strict comparison)", "top_k_filter", _top_k('''\
    kth = torch.topk(logits, min(k, logits.size(-1))).values[..., -1, None]
    return logits.masked_fill(logits <= kth, float("-inf"))
'''), expect="one token too few"),
    wrong("top_k_filter: keeps k + 1", "top_k_filter", _top_k('''    values, _ = torch.sort(logits, dim=-1, descending=True)
    kth = values[..., min(k, logits.size(-1) - 1), None]
    return logits.masked_fill(logits < kth, float("-inf"))
'''), expect="one token too many"),
    wrong("top_k_filter: keeps the k smallest", "top_k_filter", _top_k('''\
    values, _ = torch.topk(logits, min(k, logits.shape[-1]), largest=False)
    return logits.masked_fill(logits > values[..., -1:], float("-inf"))
'''), expect="the k smallest"),
    wrong("top_k_filter: zeros instead of -inf", "top_k_filter", _top_k('''\
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return torch.where(logits < kth, torch.zeros_like(logits), logits)
'''), expect="instead of -inf"),
    wrong("top_k_filter: -1e9 instead of -inf", "top_k_filter", _top_k('''\
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -1e9)
'''), expect="not a large negative number"),
    wrong("top_k_filter: along the first dimension", "top_k_filter", _top_k('''    kth = torch.topk(logits, k, dim=0).values[-1:]
    return logits.masked_fill(logits < kth, float("-inf"))
'''), expect="last dimension"),
    wrong("top_k_filter: the k largest of the whole batch", "top_k_filter", _top_k('''\
    kth = torch.topk(logits.flatten(), min(k, logits.numel())).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))
'''), expect="whole batch"),
    wrong("top_k_filter: one row only (values[:, -1] without keepdim)", "top_k_filter", _top_k('''\
    kth = torch.topk(logits, min(k, logits.shape[-1])).values[:, -1]
    return logits.masked_fill(logits < kth, float("-inf"))
'''), expect="batch of 3 rows"),
    wrong("top_k_filter: (B, V) only", "top_k_filter", _top_k('''\
    kth = torch.topk(logits, min(k, logits.shape[1]), dim=1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))
'''), expect="(2, 2, 5)"),
    wrong("top_k_filter: k larger than the vocabulary not handled", "top_k_filter", _top_k('''\
    kth = torch.topk(logits, k).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))
'''), expect="every token is kept"),
    wrong("top_k_filter: returns the top-k values only", "top_k_filter", _top_k('''\
    return torch.topk(logits, min(k, logits.shape[-1])).values
'''), expect="shape of the logits"),
    wrong("top_k_filter: sorted output", "top_k_filter", _top_k('''    values, _ = torch.sort(logits, dim=-1, descending=True)
    values[..., k:] = float("-inf")
    return values
'''), expect="each token should keep its place"),
    wrong("top_k_filter: threshold at the (k+1)-th value, strict", "top_k_filter", _top_k('''    if k >= logits.shape[-1]:
        return logits
    values = torch.sort(logits, dim=-1, descending=True).values
    return logits.masked_fill(~(logits > values[..., k:k + 1]), float("-inf"))
'''), expect="ties", hidden_only="without ties, keeping the logits above the (k+1)-th largest keeps the k largest"),
    correct("top_k_filter: topk indices and scatter", "top_k_filter", _top_k('''    k = min(k, logits.size(-1))
    values, indices = torch.topk(logits, k, dim=-1)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, indices, values)
''')),
    correct("top_k_filter: sort, threshold, torch.where", "top_k_filter", _top_k('''\
    sorted_logits = torch.sort(logits, dim=-1, descending=True).values
    kth = sorted_logits[..., min(k, logits.shape[-1]) - 1].unsqueeze(-1)
    return torch.where(logits < kth, torch.full_like(logits, -math.inf), logits)
''')),
    correct("top_k_filter: in place, only when k < V", "top_k_filter", _top_k('''    if k < logits.shape[-1]:
        threshold = torch.topk(logits, k)[0][..., -1, None]
        logits[logits < threshold] = -float("inf")
    return logits
''')),

    # ---- top_p_filter ------------------------------------------------------------------------------------------
    wrong("top_p_filter: the token that crosses p is removed", "top_p_filter", _top_p_sorted("cumulative > p"),
          expect="makes the sum reach p"),
    wrong("top_p_filter: the top token dropped when it alone exceeds p", "top_p_filter", _top_p('''\
    probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
    remove_sorted = torch.cumsum(probs, dim=-1) > p
    remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))
'''), expect="most likely token must always be kept"),
    wrong("top_p_filter: the mask not put back in vocabulary order", "top_p_filter",
          _top_p_sorted("cumulative - probs >= p", put_back="remove_sorted"), expect="in vocabulary order"),
    wrong("top_p_filter: gather instead of scatter", "top_p_filter",
          _top_p_sorted("cumulative - probs >= p", put_back="remove_sorted.gather(-1, order)"), expect="wrong order"),
    wrong("top_p_filter: cumulative sum before sorting", "top_p_filter", _top_p('''    probs = torch.softmax(logits, dim=-1)
    cumulative = probs.cumsum(dim=-1)
    return logits.masked_fill(cumulative - probs >= p, float("-inf"))
'''), expect="sort the probabilities first"),
    wrong("top_p_filter: cumulative sum of the logits (no softmax)", "top_p_filter", _top_p('''\
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = sorted_logits.cumsum(dim=-1)
    remove_sorted = cumulative - sorted_logits >= p
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))
'''), expect="softmax of the logits"),
    wrong("top_p_filter: zeros instead of -inf", "top_p_filter", _top_p_sorted("cumulative - probs >= p", fill="0.0"),
          expect="instead of -inf"),
    wrong("top_p_filter: removals of every row applied to all rows", "top_p_filter", _top_p('''    logits = logits.clone()
    probs, idx = torch.sort(torch.softmax(logits, dim=-1), descending=True)
    remove = torch.cumsum(probs, dim=-1) - probs >= p
    logits[..., idx[remove]] = float("-inf")
    return logits
'''), expect="removed in every row"),
    wrong("top_p_filter: returns probabilities", "top_p_filter", _top_p('''\
    probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
    remove_sorted = torch.cumsum(probs, dim=-1) - probs >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return torch.softmax(logits.masked_fill(remove, float("-inf")), dim=-1)
'''), expect="these are probabilities"),
    correct("top_p_filter: ascending sort, cumsum <= 1 - p (as Hugging Face)", "top_p_filter", _top_p('''\
    sorted_logits, sorted_indices = torch.sort(logits, descending=False)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_indices_to_remove = cumulative_probs <= (1 - p)
    sorted_indices_to_remove[..., -1:] = 0
    indices_to_remove = sorted_indices_to_remove.scatter(-1, sorted_indices, sorted_indices_to_remove)
    return logits.masked_fill(indices_to_remove, -float("Inf"))
''')),
    correct("top_p_filter: shifted mask, inverse permutation with argsort", "top_p_filter", _top_p('''\
    probs = F.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    remove = sorted_probs.cumsum(dim=-1) > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    remove = torch.gather(remove, -1, order.argsort(dim=-1))
    out = logits.clone()
    out[remove] = float("-inf")
    return out
''')),
    correct("top_p_filter: a loop over rows", "top_p_filter", _top_p('''    flat = logits.reshape(-1, logits.shape[-1])
    rows = []
    for row in flat:
        probs, order = row.softmax(-1).sort(descending=True)
        keep = int((probs.cumsum(0) < p).sum()) + 1  # the tokens before the sum reaches p, and the one that reaches it
        kept = torch.full_like(row, float("-inf"))
        kept[order[:keep]] = row[order[:keep]]
        rows.append(kept)
    return torch.stack(rows).reshape(logits.shape)
''')),

    # ---- sample ------------------------------------------------------------------------------------------------
    wrong("sample: argmax instead of sampling", "sample", _sample(pick="probs.argmax(dim=-1, keepdim=True)"),
          expect="draw each token at random"),
    wrong("sample: generator ignored", "sample", _sample(pick="torch.multinomial(probs, num_samples=1)"),
          expect="ignores the generator"),
    wrong("sample: context not cropped", "sample", _sample(context="input_ids"), expect="crop the context"),
    wrong("sample: context cropped to the first seq_len tokens", "sample", _sample(context="input_ids[:, :model.seq_len]"),
          expect="last model.seq_len tokens"),
    wrong("sample: context cropped one token short", "sample", _sample(context="input_ids[:, -(model.seq_len - 1):]"),
          expect="last model.seq_len tokens"),
    wrong("sample: softmax missing", "sample", _sample(pick="torch.multinomial(logits, num_samples=1, generator=generator)"),
          expect="not probabilities"),
    wrong("sample: softmax over the batch", "sample", _sample(filters='''        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probs = F.softmax(logits, dim=0)
'''), expect="equally likely"),
    wrong("sample: temperature after the softmax", "sample", _sample(filters='''        probs = F.softmax(logits, dim=-1)
        probs = apply_temperature(probs, temperature)
        if top_k is not None:
            probs = top_k_filter(probs, top_k)
        if top_p is not None:
            probs = top_p_filter(probs, top_p)
'''), expect="apply_temperature got probabilities"),
    wrong("sample: top-k and top-p after the softmax", "sample", _sample(filters='''\
        probs = F.softmax(apply_temperature(logits, temperature), dim=-1)
        if top_k is not None:
            probs = top_k_filter(probs, top_k)
        if top_p is not None:
            probs = top_p_filter(probs, top_p)
        probs = probs / probs.sum(dim=-1, keepdim=True)
'''), expect="top_k_filter got probabilities"),
    wrong("sample: results of the filters ignored", "sample", _sample(filters='''\
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            top_k_filter(logits, top_k)
        if top_p is not None:
            top_p_filter(logits, top_p)
        probs = F.softmax(logits, dim=-1)
'''), expect="does not use the logits that top_k_filter returns"),
    wrong("sample: temperature ignored", "sample", _sample(filters='''        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probs = F.softmax(logits, dim=-1)
'''), expect="does not call apply_temperature"),
    wrong("sample: top-p before the temperature and top-k", "sample", _sample(filters='''        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        probs = F.softmax(logits, dim=-1)
'''), expect="top_p_filter should come last"),
    wrong("sample: filters called when top_k and top_p are None", "sample", _sample(filters='''\
        logits = top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)
        probs = F.softmax(logits, dim=-1)
'''), expect="although top_k is None"),
    wrong("sample: first position instead of the last", "sample", _sample(position="0"), expect="last position"),
    wrong("sample: not in eval mode", "sample", _sample(eval_line=""), expect="eval mode"),
    wrong("sample: gradients computed", "sample", _sample(decorator=""), expect="@torch.no_grad()"),
    wrong("sample: one prompt only", "sample", '''@torch.no_grad()
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    model.eval()
    for _ in range(max_new_tokens):
        logits = model(input_ids[:, -model.seq_len:])[0, -1]
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        next_token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        input_ids = torch.cat([input_ids, next_token.unsqueeze(0)], dim=1)
    return input_ids
''', expect="batch of 3 prompts"),
    correct("sample: Gumbel-max with the generator, no_grad block, restores the mode", "sample", '''\
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = input_ids if input_ids.size(1) <= model.seq_len else input_ids[:, -model.seq_len:]
            logits = apply_temperature(model(context)[:, -1, :], temperature)
            if top_k:
                logits = top_k_filter(logits, top_k)
            if top_p:
                logits = top_p_filter(logits, top_p)
            uniform = torch.rand(logits.shape, generator=generator).clamp_min(1e-20)
            next_token = (logits - torch.log(-torch.log(uniform))).argmax(dim=-1, keepdim=True)
            input_ids = torch.cat([input_ids, next_token], dim=-1)
    model.train(was_training)
    return input_ids
'''),
    correct("sample: a while loop, log_softmax, unnormalised weights", "sample", '''@torch.no_grad()
def sample(model, input_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    model.eval()
    out = input_ids
    while out.shape[1] < input_ids.shape[1] + max_new_tokens:
        logits = F.log_softmax(model(out[:, max(0, out.shape[1] - model.seq_len):])[:, -1], dim=-1)
        logits = apply_temperature(logits, temperature)
        if top_k is not None:
            logits = top_k_filter(logits, k=top_k)
        if top_p is not None:
            logits = top_p_filter(logits, p=top_p)
        weights = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
        out = torch.cat([out, torch.multinomial(weights, 1, generator=generator)], dim=1)
    return out
'''),

    # ---- beam_search -------------------------------------------------------------------------------------------
    wrong("beam_search: one beam kept (greedy)", "beam_search", _beam(keep="1"), expect="greedy decoding finds"),
    wrong("beam_search: ranked by the last log-probability only", "beam_search", _beam(score="log_probs + 0 * scores[:, None]"),
          expect="last token only"),
    wrong("beam_search: returns the worst final beam", "beam_search", _beam(result="beams[-1:]"), expect="worst"),
    wrong("beam_search: the beams start as copies of the prompt", "beam_search",
          _beam(init="beams, scores = input_ids.repeat(num_beams, 1), torch.zeros(num_beams)"), expect="copies of the prompt"),
    wrong("beam_search: context not cropped", "beam_search", _beam(context="beams"), expect="crop the context"),
    wrong("beam_search: context cropped to the first seq_len tokens", "beam_search", _beam(context="beams[:, :model.seq_len]"),
          expect="last model.seq_len tokens"),
    wrong("beam_search: num_beams candidates even when there are fewer", "beam_search", _beam(keep="num_beams"),
          expect="keep all of them"),
    wrong("beam_search: not in eval mode", "beam_search", _beam().replace("    model.eval()\n", ""), expect="eval mode"),
    correct("beam_search: Python lists of (score, tokens)", "beam_search", '''\
def beam_search(model, input_ids, num_beams, max_new_tokens):
    model.eval()
    beams = [(0.0, input_ids[0].tolist())]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            candidates = []
            for score, tokens in beams:
                context = torch.tensor([tokens[-model.seq_len:]], device=input_ids.device)
                log_probs = torch.log_softmax(model(context)[0, -1], dim=-1)
                for token, lp in enumerate(log_probs.tolist()):
                    candidates.append((score + lp, tokens + [token]))
            candidates.sort(key=lambda c: c[0], reverse=True)
            beams = candidates[:num_beams]
    return torch.tensor([beams[0][1]], device=input_ids.device)
'''),
    correct("beam_search: num_beams copies, the others at -inf (as Hugging Face)", "beam_search", '''@torch.no_grad()
def beam_search(model, input_ids, num_beams, max_new_tokens):
    model.eval()
    beams = input_ids.expand(num_beams, -1)
    scores = torch.full((num_beams,), float("-inf"))
    scores[0] = 0.0
    for _ in range(max_new_tokens):
        log_probs = model(beams[:, -model.seq_len:])[:, -1].log_softmax(-1)
        total = scores.unsqueeze(1) + log_probs
        V = total.shape[1]
        scores, flat = total.flatten().topk(num_beams)
        beams = torch.cat([beams[torch.div(flat, V, rounding_mode="floor")], flat.remainder(V).view(-1, 1)], dim=1)
    return beams[scores.argmax()].unsqueeze(0)
'''),
]

# Typical mistakes for the demo, in three exercises.
# Graded twice by the tests, to show that grading them gives the same result each time: the answers whose grading
# involves randomness ("correct-<n>": a group of correct ones).
REGRADED = ["correct-1", "correct-2", "sample: generator ignored", "sample: argmax instead of sampling",
            "sample: not in eval mode"]

# The checks of one exercise never call another exercise's answer (sample's checks use stand-ins for the filters):
# wrong entries of different exercises can be graded in one submission (see coursekit.catalogue.submissions).
INDEPENDENT_EXERCISES = True

DEMO_MISTAKES = ["apply_temperature: multiplied instead of divided", "top_p_filter: the token that crosses p is removed",
                 "sample: generator ignored"]
