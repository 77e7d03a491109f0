"""pw2's catalogue: realistic wrong answers and correct answers written differently, one entry per answer.

Each entry is the source of one or more exercise cells of the notebook (keyed by the cell's grade_id,
which is the exercise's name). tests/test_catalogue.py grades every entry through nbgrader and checks
that wrong answers lose points in their own exercise only, with a message that names the mistake
(`expect`), and that correct answers get full marks. `make catalogue` prints the table.

To add a mistake seen in real submissions: copy the student's cell into a new `wrong(...)` entry, with
the words its failure message must contain, and run `make catalogue`. If no check catches it, add a
check (or a known variant to MISTAKES) in the notebook's hidden tests, in notebook.py next to this file.
"""

from coursekit.catalogue import correct, wrong

# Typical mistakes for the demo's "mistakes" hand-in, in three exercises: names of entries below.
DEMO_MISTAKES = ["self_attention: no scaling", "lm_loss: padding counted", "decode: not in eval mode"]

# Graded twice by the tests, to show that grading them gives the same result each time: the answers whose grading
# involves randomness (dropout, sampling) or numerics close to the tolerance ("correct-<n>": a group of correct ones).
REGRADED = ["correct-1", "correct-2", "correct-3", "CausalSelfAttention: no dropout on the attention weights",
            "FeedForward: no dropout", "decode: not in eval mode", "decode: sampling instead of greedy",
            "train_step: no clipping", "causal: masked with 0 instead of -inf"]

# The hidden checks of one exercise never call another exercise's answer (Block's use stand-in attention and
# feed-forward modules, Transformer's stand-in blocks, train_step's and decode's a stand-in model), and the public
# checks are run for each entry alone (coursekit.catalogue.public_failures): wrong entries of different exercises can
# be graded in one submission (see coursekit.catalogue.submissions), 17 hand-ins instead of 90.
INDEPENDENT_EXERCISES = True



# Pieces the entries below share: a correct multi-head attention with one knob per step.
def _mha(name="multi_head_attention", split="view(B, T, num_heads, -1).transpose(1, 2)", scale="math.sqrt(Q.shape[-1])",
         mask="", softmax="scores.softmax(dim=-1)", after="", merge="heads.transpose(1, 2).reshape(B, T, -1)",
         out="merged @ W_O", heads="num_heads"):
    return f'''def {name}(S, W_Q, W_K, W_V, W_O, num_heads=4):
    num_heads = {heads}
    B, T, _ = S.shape
    Q, K, V = ((S @ W).{split} for W in (W_Q, W_K, W_V))
    scores = Q @ K.transpose(-2, -1) / {scale}
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=S.device))
{mask}    weights = {softmax}
{after}    heads = weights @ V
    merged = {merge}
    return {out}
'''


CAUSAL = "    scores = scores.masked_fill(~keep, float('-inf'))\n"


def _causal(**knobs):
    return _mha(name="causal_multi_head_attention", **{"mask": CAUSAL, **knobs})


def _attention_module(init_extra="", forward=None):
    forward = forward or '''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        scores = scores.masked_fill(~self.keep[:T, :T], float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)))
'''
    return f'''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.h = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(hidden_size, hidden_size) for _ in range(4))
        self.attn_drop, self.out_drop = nn.Dropout(dropout), nn.Dropout(dropout)
        self.register_buffer("keep", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)))
        self.p = dropout
{init_extra}
    def forward(self, x):
{forward}'''


def _block(forward):
    return f'''class Block(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden_size), nn.LayerNorm(hidden_size)
        self.attn = CausalSelfAttention(hidden_size, num_heads, dropout, seq_len)
        self.ff = FeedForward(hidden_size, dropout)

    def forward(self, x):
{forward}'''


def _transformer(blocks="nn.ModuleList([Block(hidden_size, num_heads, dropout, seq_len) for _ in range(num_layers)])",
                 embed="self.tok(input_ids) + self.pos(torch.arange(T, device=input_ids.device))",
                 stack="for block in self.blocks:\n            x = block(x)", out="self.head(self.norm(x))", extra=""):
    return f'''class Transformer(nn.Module):
    def __init__(self, vocab_size=100, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2):
        super().__init__()
        self.seq_len = seq_len
        self.tok, self.pos = nn.Embedding(vocab_size, hidden_size), nn.Embedding(seq_len, hidden_size)
        self.blocks = {blocks}
        self.norm, self.head = nn.LayerNorm(hidden_size), nn.Linear(hidden_size, vocab_size)
{extra}
    def forward(self, input_ids):
        T = input_ids.shape[1]
        x = {embed}
        {stack}
        return {out}
'''


def _loss(body):
    return f"def lm_loss(logits, input_ids, attention_mask):\n{body}"


def _step(body):
    return f"def train_step(model, optimizer, input_ids, attention_mask):\n{body}"


def _decode(body, decorator="@torch.no_grad()\n"):
    return f"{decorator}def decode(model, input_ids, max_new_tokens=32):\n{body}"


GREEDY_LOOP = '''    model.eval()
    for _ in range(max_new_tokens):
        logits = model({context})
        next_ids = {pick}
        input_ids = torch.cat((input_ids, next_ids), dim=1)
    return input_ids
'''


def _greedy(context="input_ids[:, -model.seq_len:]", pick="logits[:, -1].argmax(dim=-1, keepdim=True)", eval_line=True):
    body = GREEDY_LOOP.format(context=context, pick=pick)
    return _decode(body if eval_line else body.replace("    model.eval()\n", ""))


ENTRIES = [
    # ---- self_attention ----------------------------------------------------------------------------------
    wrong("self_attention: no scaling", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1)).softmax(dim=-1) @ V
''', expect="not scaled"),
    wrong("self_attention: scaled by the input size", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1) / math.sqrt(S.shape[-1])).softmax(dim=-1) @ V
''', expect="square root of the hidden size"),
    wrong("self_attention: multiplied by sqrt(d_k)", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1) * math.sqrt(K.shape[-1])).softmax(dim=-1) @ V
''', expect="multiplied by √d_k"),
    wrong("self_attention: softmax over the queries", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])).softmax(dim=1) @ V
''', expect="softmax is taken over the wrong dimension"),
    wrong("self_attention: returns the weights", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K = S @ W_Q, S @ W_K
    return (Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])).softmax(dim=-1)
''', expect="should have shape"),
    wrong("self_attention: scaled by d_k instead of sqrt(d_k)", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1) / K.shape[-1]).softmax(dim=-1) @ V
''', expect="divided by d_k instead of √d_k"),
    wrong("self_attention: scaled by the value size", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (Q @ K.transpose(-2, -1) / math.sqrt(V.shape[-1])).softmax(dim=-1) @ V
''', expect="the size of one value"),
    wrong("self_attention: softmax by hand, overflows on large scores", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    e = torch.exp(Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1]))
    return e / e.sum(dim=-1, keepdim=True) @ V
''', expect="overflows"),
    # Mistakes no listed variant explains: the checks name them from what the code does (diagnosis by behaviour).
    wrong("self_attention: sigmoid instead of softmax", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return torch.sigmoid(Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])) @ V
''', expect="not a weighted average of the value rows"),
    wrong("self_attention: a causal mask already", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    scores = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])
    T = scores.shape[-1]
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool, device=S.device), 1), float("-inf"))
    return scores.softmax(dim=-1) @ V
''', expect="no causal mask"),
    wrong("self_attention: softmax over the batch dimension", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return F.softmax(Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1]), dim=0) @ V
''', expect="not a weighted average of the value rows"),
    wrong("self_attention: keys compared with keys", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    return (K @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])).softmax(dim=-1) @ V
''', expect="not a softmax of the scores Q Kᵀ"),
    wrong("self_attention: ReLU of the scores, normalized", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    weights = torch.relu(Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1]))
    return weights / (weights.sum(dim=-1, keepdim=True) + 1e-9) @ V
''', expect="not a softmax of the scores Q Kᵀ"),
    correct("self_attention: einsum", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    Q, K, V = (torch.einsum("btd,de->bte", S, W) for W in (W_Q, W_K, W_V))
    weights = torch.einsum("bqe,bke->bqk", Q, K).div(K.shape[-1] ** 0.5).softmax(-1)
    return torch.einsum("bqk,bkv->bqv", weights, V)
'''),
    correct("self_attention: F.scaled_dot_product_attention", "self_attention", '''def self_attention(S, W_Q, W_K, W_V):
    return F.scaled_dot_product_attention(S @ W_Q, S @ W_K, S @ W_V)
'''),

    # ---- multi_head_attention ----------------------------------------------------------------------------
    wrong("multi_head_attention: split without transpose", "multi_head_attention",
          _mha(split="reshape(B, num_heads, T, -1)"), expect="split without a transpose"),
    wrong("multi_head_attention: merged without transpose", "multi_head_attention",
          _mha(merge="heads.reshape(B, T, -1)"), expect="merged without transposing back"),
    wrong("multi_head_attention: W_O forgotten", "multi_head_attention", _mha(out="merged"), expect="W_O"),
    wrong("multi_head_attention: num_heads ignored", "multi_head_attention", _mha(heads="4"),
          expect="not taken from num_heads"),
    wrong("multi_head_attention: scaled by the hidden size", "multi_head_attention",
          _mha(scale="math.sqrt(S.shape[-1])"), expect="square root of the hidden size"),
    wrong("multi_head_attention: softmax over the queries", "multi_head_attention",
          _mha(softmax="scores.softmax(dim=-2)"), expect="softmax is taken over the wrong dimension"),
    wrong("multi_head_attention: W_O applied transposed", "multi_head_attention", _mha(out="merged @ W_O.T"),
          expect="applied transposed"),
    wrong("multi_head_attention: no scaling", "multi_head_attention", _mha(scale="1"), expect="not scaled"),
    wrong("multi_head_attention: a single head", "multi_head_attention", _mha(heads="1"),
          expect="not taken from num_heads"),
    # Named from every head's weights, asked with values that are the identity (diagnosis by behaviour).
    wrong("multi_head_attention: scaled by d_h instead of its square root", "multi_head_attention",
          _mha(scale="Q.shape[-1]"), expect="multiplied by 0.25, where they should be divided by √d_k"),
    wrong("multi_head_attention: sigmoid instead of softmax", "multi_head_attention",
          _mha(softmax="torch.sigmoid(scores)"), expect="not a weighted average of the value rows"),
    wrong("multi_head_attention: a causal mask already", "multi_head_attention", _mha(mask=CAUSAL),
          expect="multi_head_attention has no causal mask"),
    correct("multi_head_attention: a loop over heads", "multi_head_attention", '''def multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=4):
    d = W_Q.shape[1] // num_heads
    heads = []
    for h in range(num_heads):
        cols = slice(h * d, (h + 1) * d)
        Q, K, V = S @ W_Q[:, cols], S @ W_K[:, cols], S @ W_V[:, cols]
        heads.append(torch.softmax(Q @ K.mT / d ** 0.5, dim=-1) @ V)
    return torch.cat(heads, dim=-1) @ W_O
'''),
    correct("multi_head_attention: einsum over heads", "multi_head_attention", '''def multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=4):
    B, T, C = S.shape
    q, k, v = ((S @ W).reshape(B, T, num_heads, C // num_heads) for W in (W_Q, W_K, W_V))
    att = torch.einsum("bqhd,bkhd->bhqk", q, k) / (C // num_heads) ** 0.5
    out = torch.einsum("bhqk,bkhd->bqhd", att.softmax(-1), v)
    return out.reshape(B, T, C) @ W_O
'''),

    # ---- causal_multi_head_attention ---------------------------------------------------------------------
    wrong("causal: no mask", "causal_multi_head_attention", _causal(mask=""), expect="must not attend to later ones"),
    wrong("causal: mask in the wrong direction", "causal_multi_head_attention",
          _causal(mask="    scores = scores.masked_fill(torch.triu(torch.ones(T, T, device=S.device)) == 0, float('-inf'))\n"),
          expect="wrong way"),
    wrong("causal: mask off by one (sees the next token)", "causal_multi_head_attention",
          _causal(mask="    scores = scores.masked_fill(torch.tril(torch.ones(T, T, device=S.device), 1) == 0, float('-inf'))\n"),
          expect="can also see the next one"),
    wrong("causal: mask off by one (hides itself)", "causal_multi_head_attention",
          _causal(mask="    scores = scores.masked_fill(torch.tril(torch.ones(T, T, device=S.device), -1) == 0, float('-inf'))\n"),
          expect="hidden from itself"),
    wrong("causal: masked with 0 instead of -inf", "causal_multi_head_attention",
          _causal(mask="    scores = scores.masked_fill(~keep, 0.0)\n"), expect="set to 0 instead of -inf"),
    wrong("causal: mask applied after the softmax", "causal_multi_head_attention",
          _causal(mask="", after="    weights = weights.masked_fill(~keep, 0.0)\n"), expect="after the softmax"),
    wrong("causal: mask inverted (the past is masked)", "causal_multi_head_attention",
          _causal(mask="    scores = scores.masked_fill(keep, float('-inf'))\n"), expect="must not attend to later ones"),
    wrong("causal: scores multiplied by the mask", "causal_multi_head_attention",
          _causal(mask="    scores = scores * keep\n"), expect="set to 0 instead of -inf"),
    wrong("causal: no scaling", "causal_multi_head_attention", _causal(scale="1"), expect="not scaled"),
    correct("causal: -1e9 instead of -inf", "causal_multi_head_attention",
            _causal(mask="    scores = scores.masked_fill(~keep, -1e9)\n")),
    correct("causal: additive mask", "causal_multi_head_attention",
            _causal(mask="    scores = scores + torch.zeros(T, T, device=S.device).masked_fill(~keep, float('-inf'))\n")),
    correct("causal: F.scaled_dot_product_attention(is_causal=True)", "causal_multi_head_attention", '''def causal_multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=4):
    B, T, C = S.shape
    q, k, v = ((S @ W).view(B, T, num_heads, -1).transpose(1, 2) for W in (W_Q, W_K, W_V))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).contiguous().view(B, T, C) @ W_O
'''),

    # ---- CausalSelfAttention ------------------------------------------------------------------------------
    wrong("CausalSelfAttention: no dropout", "CausalSelfAttention",
          _attention_module(init_extra="        self.attn_drop = self.out_drop = nn.Identity()\n"),
          expect="no dropout in training mode"),
    wrong("CausalSelfAttention: dropout still active in eval mode", "CausalSelfAttention", _attention_module(forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        scores = scores.masked_fill(~self.keep[:T, :T], float("-inf"))
        weights = F.dropout(scores.softmax(dim=-1), self.p)
        return F.dropout(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)), self.p)
'''), expect="dropout must be off in eval mode"),
    wrong("CausalSelfAttention: no dropout on the attention weights", "CausalSelfAttention",
          _attention_module(init_extra="        self.attn_drop = nn.Identity()\n"), expect="dropout on the attention weights too"),
    wrong("CausalSelfAttention: fails for T < seq_len", "CausalSelfAttention", _attention_module(forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        scores = scores.masked_fill(~self.keep, float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)))
'''), expect="slice it to the input's length"),
    wrong("CausalSelfAttention: no mask", "CausalSelfAttention", _attention_module(forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        weights = self.attn_drop((Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])).softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)))
'''), expect="must not attend to later ones"),
    wrong("CausalSelfAttention: no scaling", "CausalSelfAttention", _attention_module(forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = (Q @ K.transpose(-2, -1)).masked_fill(~self.keep[:T, :T], float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)))
'''), expect="not scaled"),
    wrong("CausalSelfAttention: no output projection", "CausalSelfAttention", _attention_module(
        init_extra="        del self.o\n", forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        scores = scores.masked_fill(~self.keep[:T, :T], float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop((weights @ V).transpose(1, 2).reshape(B, T, C))
'''), expect="output projection"),
    wrong("CausalSelfAttention: mask kept as a plain tensor attribute", "CausalSelfAttention",
          _attention_module(init_extra="        self.causal = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))\n",
                            forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        scores = scores.masked_fill(~self.causal[:T, :T], float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)))
'''), expect="make it a buffer of the module"),
    wrong("CausalSelfAttention: scaled by the hidden size", "CausalSelfAttention", _attention_module(forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(C)
        scores = scores.masked_fill(~self.keep[:T, :T], float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).transpose(1, 2).reshape(B, T, C)))
'''), expect="square root of the hidden size"),
    wrong("CausalSelfAttention: heads merged without transpose", "CausalSelfAttention", _attention_module(forward='''        B, T, C = x.shape
        Q, K, V = (p(x).view(B, T, self.h, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        scores = scores.masked_fill(~self.keep[:T, :T], float("-inf"))
        weights = self.attn_drop(scores.softmax(dim=-1))
        return self.out_drop(self.o((weights @ V).reshape(B, T, C)))
'''), expect="merged without transposing back"),
    correct("CausalSelfAttention: nn.MultiheadAttention", "CausalSelfAttention", '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("future", torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1))

    def forward(self, x):
        T = x.shape[1]
        y, _ = self.attn(x, x, x, attn_mask=self.future[:T, :T], need_weights=False)
        return self.drop(y)
'''),
    correct("CausalSelfAttention: mask kept as a frozen parameter, a loop over heads", "CausalSelfAttention", '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.n, self.d = num_heads, hidden_size // num_heads
        self.q, self.k, self.v, self.proj = (nn.Linear(hidden_size, hidden_size) for _ in range(4))
        self.drop_w, self.drop_out = nn.Dropout(dropout), nn.Dropout(dropout)
        self.mask = nn.Parameter(torch.tril(torch.ones(seq_len, seq_len)), requires_grad=False)

    def forward(self, x):
        T = x.shape[1]
        Q, K, V = self.q(x), self.k(x), self.v(x)
        outs = []
        for h in range(self.n):
            cols = slice(h * self.d, (h + 1) * self.d)
            w = (Q[..., cols] @ K[..., cols].transpose(-2, -1)) / math.sqrt(self.d)
            w = self.drop_w(w.masked_fill(self.mask[:T, :T] == 0, float("-inf")).softmax(-1))
            outs.append(w @ V[..., cols])
        return self.drop_out(self.proj(torch.cat(outs, dim=-1)))
'''),
    correct("CausalSelfAttention: fused QKV with F.scaled_dot_product_attention, no bias", "CausalSelfAttention", '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.c_attn = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.c_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.n_head, self.dropout = num_heads, dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
'''),
    correct("CausalSelfAttention: per-head (heads, hidden, d_head) parameters and einsum, ARENA-style", "CausalSelfAttention",
            '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        d_head = hidden_size // num_heads
        self.W_Q = nn.Parameter(torch.randn(num_heads, hidden_size, d_head) * 0.02)
        self.W_K = nn.Parameter(torch.randn(num_heads, hidden_size, d_head) * 0.02)
        self.W_V = nn.Parameter(torch.randn(num_heads, hidden_size, d_head) * 0.02)
        self.W_O = nn.Parameter(torch.randn(num_heads, d_head, hidden_size) * 0.02)
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(num_heads, d_head)) for _ in range(3))
        self.b_O = nn.Parameter(torch.zeros(hidden_size))
        self.attn_dropout, self.resid_dropout = nn.Dropout(dropout), nn.Dropout(dropout)
        self.register_buffer("IGNORE", torch.tensor(float("-inf")), persistent=False)

    def forward(self, x):
        q = torch.einsum("bph,nhd->bpnd", x, self.W_Q) + self.b_Q
        k = torch.einsum("bph,nhd->bpnd", x, self.W_K) + self.b_K
        v = torch.einsum("bph,nhd->bpnd", x, self.W_V) + self.b_V
        scores = torch.einsum("bqnd,bknd->bnqk", q, k) / self.W_Q.shape[-1] ** 0.5
        T = x.shape[1]
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1), self.IGNORE)
        pattern = self.attn_dropout(scores.softmax(dim=-1))
        z = torch.einsum("bnqk,bknd->bqnd", pattern, v)
        return self.resid_dropout(torch.einsum("bqnd,ndh->bqh", z, self.W_O) + self.b_O)
'''),
    correct("CausalSelfAttention: raw parameter matrices and einsum", "CausalSelfAttention", '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.h = num_heads
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Parameter(torch.randn(hidden_size, hidden_size) / hidden_size ** 0.5)
                                                  for _ in range(4))
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.register_buffer("tril", torch.tril(torch.ones(seq_len, seq_len)))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = ((x @ W).reshape(B, T, self.h, -1).permute(0, 2, 1, 3) for W in (self.W_Q, self.W_K, self.W_V))
        w = torch.einsum("bhqd,bhkd->bhqk", q, k) * (q.shape[-1] ** -0.5)
        w = self.drop1(F.softmax(w.masked_fill(self.tril[:T, :T] == 0, float("-inf")), dim=-1))
        return self.drop2(torch.einsum("bhqk,bhkd->bhqd", w, v).permute(0, 2, 1, 3).reshape(B, T, C) @ self.W_O)
'''),
    correct("CausalSelfAttention: output projection declared first, mask built on the fly", "CausalSelfAttention", '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.value, self.key, self.query = (nn.Linear(hidden_size, hidden_size) for _ in range(3))
        self.heads = num_heads
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (m(x).view(B, T, self.heads, -1).transpose(1, 2) for m in (self.query, self.key, self.value))
        att = q @ k.transpose(-2, -1) / math.sqrt(C // self.heads)
        att = att.masked_fill(torch.ones(T, T, device=x.device).tril() == 0, -1e9)
        y = (self.dropout(att.softmax(-1)) @ v).transpose(1, 2).reshape(B, T, C)
        return self.dropout(self.proj(y))
'''),

    correct("CausalSelfAttention: one Head module per head (nanoGPT lecture style)", "CausalSelfAttention", '''class Head(nn.Module):
    def __init__(self, hidden_size, head_size, dropout, seq_len):
        super().__init__()
        self.key = nn.Linear(hidden_size, head_size, bias=False)
        self.query = nn.Linear(hidden_size, head_size, bias=False)
        self.value = nn.Linear(hidden_size, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(seq_len, seq_len)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = self.dropout(F.softmax(wei, dim=-1))
        return wei @ self.value(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        head_size = hidden_size // num_heads
        self.heads = nn.ModuleList([Head(hidden_size, head_size, dropout, seq_len) for _ in range(num_heads)])
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        return self.dropout(self.proj(out))
'''),
    correct("CausalSelfAttention: per-head projections in one ModuleList per role", "CausalSelfAttention", '''class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        d = hidden_size // num_heads
        self.queries = nn.ModuleList([nn.Linear(hidden_size, d) for _ in range(num_heads)])
        self.keys = nn.ModuleList([nn.Linear(hidden_size, d) for _ in range(num_heads)])
        self.values = nn.ModuleList([nn.Linear(hidden_size, d) for _ in range(num_heads)])
        self.out = nn.Linear(hidden_size, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("causal", torch.ones(seq_len, seq_len, dtype=torch.bool).tril())

    def forward(self, x):
        T = x.shape[1]
        heads = []
        for q, k, v in zip(self.queries, self.keys, self.values):
            Q, K, V = q(x), k(x), v(x)
            s = (Q @ K.transpose(1, 2)) / math.sqrt(Q.shape[-1])
            heads.append(self.drop(s.masked_fill(~self.causal[:T, :T], float("-inf")).softmax(-1)) @ V)
        return self.drop(self.out(torch.cat(heads, dim=-1)))
'''),

    # ---- FeedForward ---------------------------------------------------------------------------------------
    wrong("FeedForward: intermediate width 2h", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, 2 * hidden_size), nn.ReLU(),
                                 nn.Linear(2 * hidden_size, hidden_size), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)
''', expect="4 * hidden_size"),
    wrong("FeedForward: no activation", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.a, self.b = nn.Linear(hidden_size, 4 * hidden_size), nn.Linear(4 * hidden_size, hidden_size)
        self.d = nn.Dropout(dropout)

    def forward(self, x):
        return self.d(self.b(self.a(x)))
''', expect="no activation"),
    wrong("FeedForward: no dropout", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.ReLU(), nn.Linear(4 * hidden_size, hidden_size))

    def forward(self, x):
        return self.net(x)
''', expect="add dropout on the output"),
    wrong("FeedForward: GELU instead of ReLU", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(),
                                 nn.Linear(4 * hidden_size, hidden_size), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)
''', expect="should be a ReLU"),
    wrong("FeedForward: ReLU after the second layer", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.Linear(4 * hidden_size, hidden_size),
                                 nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)
''', expect="after the second layer"),
    wrong("FeedForward: dropout still active in eval mode", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.a, self.b, self.p = nn.Linear(hidden_size, 4 * hidden_size), nn.Linear(4 * hidden_size, hidden_size), dropout

    def forward(self, x):
        return F.dropout(self.b(F.relu(self.a(x))), self.p)
''', expect="dropout must be off in eval mode"),
    correct("FeedForward: no biases, functional dropout", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.w1 = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.w2 = nn.Linear(4 * hidden_size, hidden_size, bias=False)
        self.p = dropout

    def forward(self, x):
        return F.dropout(self.w2(torch.relu(self.w1(x))), self.p, training=self.training)
'''),
    correct("FeedForward: raw parameter matrices", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(hidden_size, 4 * hidden_size) / hidden_size ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(4 * hidden_size))
        self.W2 = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) / (4 * hidden_size) ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(hidden_size))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop((x @ self.W1 + self.b1).relu() @ self.W2 + self.b2)
'''),
    correct("FeedForward: nn.Sequential", "FeedForward", '''class FeedForward(nn.Module):
    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.ReLU(),
                                 nn.Linear(4 * hidden_size, hidden_size), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)
'''),

    # ---- Block -------------------------------------------------------------------------------------------
    wrong("Block: attention built with its default sizes", "Block",
          _block("        x = x + self.attn(self.ln1(x))\n        return x + self.ff(self.ln2(x))\n").replace(
              "CausalSelfAttention(hidden_size, num_heads, dropout, seq_len)", "CausalSelfAttention()"),
          expect="give the sub-layers the block's own sizes"),
    wrong("Block: no residual connections", "Block",
          _block("        x = self.attn(self.ln1(x))\n        return self.ff(self.ln2(x))\n"), expect="residual connections are missing"),
    wrong("Block: no layer norms", "Block",
          _block("        x = x + self.attn(x)\n        return x + self.ff(x)\n"), expect="layer norms are missing"),
    wrong("Block: no residual around the feed-forward", "Block",
          _block("        x = x + self.attn(self.ln1(x))\n        return self.ff(self.ln2(x))\n"),
          expect="the feed-forward has no residual connection"),
    wrong("Block: no residual around the attention", "Block",
          _block("        x = self.attn(self.ln1(x))\n        return x + self.ff(self.ln2(x))\n"),
          expect="residual connection"),
    wrong("Block: one layer norm only, before the attention", "Block",
          _block("        x = x + self.attn(self.ln1(x))\n        return x + self.ff(x)\n"),
          expect="the input of the feed-forward is not normalized"),
    wrong("Block: post-norm without the last layer norm", "Block",
          _block("        x = self.ln1(x + self.attn(x))\n        return x + self.ff(x)\n"),
          expect="a layer norm is missing"),
    correct("Block: post-norm", "Block",
            _block("        x = self.ln1(x + self.attn(x))\n        return self.ln2(x + self.ff(x))\n")),
    correct("Block: its own LayerNorm module", "Block", '''class Norm(nn.Module):
    def __init__(self, size, eps=1e-5):
        super().__init__()
        self.gain, self.shift, self.eps = nn.Parameter(torch.ones(size)), nn.Parameter(torch.zeros(size)), eps

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return self.gain * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class Block(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.norms = nn.ModuleList([Norm(hidden_size), Norm(hidden_size)])
        self.layers = nn.ModuleList([CausalSelfAttention(hidden_size, num_heads, dropout, seq_len),
                                     FeedForward(hidden_size, dropout)])

    def forward(self, x):
        for norm, layer in zip(self.norms, self.layers):
            x = x + layer(norm(x))
        return x
'''),
    correct("Block: pre-norm with another eps", "Block", '''class Block(nn.Module):
    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.sa = CausalSelfAttention(hidden_size=hidden_size, num_heads=num_heads, dropout=dropout, seq_len=seq_len)
        self.ffwd = FeedForward(hidden_size, dropout)
        self.ln1, self.ln2 = nn.LayerNorm(hidden_size, eps=1e-6), nn.LayerNorm(hidden_size, eps=1e-6)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        x = x + self.ffwd(self.ln2(x))
        return x
'''),

    # ---- Transformer -------------------------------------------------------------------------------------
    wrong("Transformer: no position embeddings", "Transformer",
          _transformer(embed="self.tok(input_ids)"), expect="add position embeddings"),
    wrong("Transformer: positions indexed by token id", "Transformer",
          _transformer(embed="self.tok(input_ids) + self.pos(input_ids % self.seq_len)"), expect="not by token id"),
    wrong("Transformer: positions taken from the end", "Transformer",
          _transformer(embed="self.tok(input_ids) + self.pos.weight[-T:]"), expect="first 5 tokens"),
    wrong("Transformer: positions reversed", "Transformer",
          _transformer(embed="self.tok(input_ids) + self.pos(torch.arange(T - 1, -1, -1, device=input_ids.device))"),
          expect="first 5 tokens"),
    wrong("Transformer: fails for T < seq_len", "Transformer",
          _transformer(embed="self.tok(input_ids) + self.pos.weight"), expect="RuntimeError"),
    wrong("Transformer: blocks not stacked (each applied to the embeddings)", "Transformer",
          _transformer(stack="h = x\n        for block in self.blocks:\n            x = block(h)"), expect="not stacked"),
    wrong("Transformer: num_layers ignored", "Transformer",
          _transformer(blocks="nn.ModuleList([Block(hidden_size, num_heads, dropout, seq_len) for _ in range(2)])"),
          expect="should contain 3 blocks"),
    wrong("Transformer: only the first block is applied", "Transformer",
          _transformer(stack="x = self.blocks[0](x)"), expect="apply each of the 3 blocks once"),
    wrong("Transformer: one block shared by every layer", "Transformer",
          _transformer(blocks="nn.ModuleList([Block(hidden_size, num_heads, dropout, seq_len)] * num_layers)"),
          expect="separate blocks"),
    wrong("Transformer: returns probabilities", "Transformer",
          _transformer(out="self.head(self.norm(x)).softmax(dim=-1)"), expect="returns probabilities"),
    correct("Transformer: no final layer norm, nn.Sequential of blocks", "Transformer", _transformer(
        blocks="nn.Sequential(*[Block(hidden_size, num_heads, dropout, seq_len) for _ in range(num_layers)])",
        stack="x = self.blocks(x)", out="self.head(x)")),
    correct("Transformer: its own LayerNorm class (nanoGPT-style, optional bias)", "Transformer", """class LayerNorm(nn.Module):
    \"\"\"LayerNorm with an optional bias (nanoGPT).\"\"\"
    def __init__(self, ndim, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


""" + _transformer().replace("self.norm, self.head = nn.LayerNorm(hidden_size), nn.Linear(hidden_size, vocab_size)",
                             "self.norm, self.head = LayerNorm(hidden_size, bias=False), nn.Linear(hidden_size, vocab_size)")),
    correct("Transformer: weight tying", "Transformer", _transformer(
        extra="        self.head = nn.Linear(self.tok.embedding_dim, self.tok.num_embeddings, bias=False)\n"
              "        self.head.weight = self.tok.weight\n")),
    correct("Transformer: positions as an nn.Parameter of shape (seq_len, hidden)", "Transformer", _transformer(
        extra="        self.pos = nn.Parameter(torch.randn(seq_len, hidden_size) * 0.02)\n",
        embed="self.tok(input_ids) + self.pos[:T]")),
    correct("Transformer: positions as an nn.Parameter of shape (1, seq_len, hidden), tied head", "Transformer", _transformer(
        extra="        self.pos = nn.Parameter(torch.zeros(1, seq_len, hidden_size).normal_(std=0.02))\n"
              "        self.head = nn.Linear(hidden_size, vocab_size, bias=False)\n"
              "        self.head.weight = self.tok.weight\n",
        embed="self.tok(input_ids) + self.pos[:, :T, :]")),
    correct("Transformer: embedding dropout and positions as a (1, T) tensor", "Transformer", _transformer(
        extra="        self.drop = nn.Dropout(dropout)\n",
        embed="self.drop(self.tok(input_ids) + self.pos(torch.arange(0, T, dtype=torch.long, device=input_ids.device)[None]))")),

    # ---- lm_loss -------------------------------------------------------------------------------------------
    wrong("lm_loss: targets not shifted", "lm_loss", _loss('''    mask = attention_mask.bool()
    return F.cross_entropy(logits[mask], input_ids[mask])
'''), expect="not shifted"),
    wrong("lm_loss: shifted twice", "lm_loss", _loss('''    mask = attention_mask[:, 2:].bool()
    return F.cross_entropy(logits[:, :-2][mask], input_ids[:, 2:][mask])
'''), expect="shifted by two"),
    wrong("lm_loss: padding counted", "lm_loss", _loss('''    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
'''), expect="padded positions are counted"),
    wrong("lm_loss: padding masked by the EOS id", "lm_loss", _loss('''    targets = input_ids[:, 1:].masked_fill(input_ids[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
'''), expect="every EOS token is ignored"),
    wrong("lm_loss: masked losses averaged over every position", "lm_loss", _loss('''    V = logits.shape[-1]
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1), reduction="none")
    return (losses * attention_mask[:, 1:].reshape(-1)).mean()
'''), expect="still counted in the average"),
    wrong("lm_loss: ignore_index=tokenizer.eos_token_id", "lm_loss", _loss('''    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1), ignore_index=tokenizer.eos_token_id)
'''), expect="every EOS token is ignored"),
    wrong("lm_loss: mask taken on the input side", "lm_loss", _loss('''    mask = attention_mask[:, :-1].bool()
    return F.cross_entropy(logits[:, :-1][mask], input_ids[:, 1:][mask])
'''), expect="input side"),
    wrong("lm_loss: mean per row", "lm_loss", _loss('''    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    mask = attention_mask[:, 1:].float()
    return ((losses * mask).sum(1) / mask.sum(1)).mean()
'''), expect="averaged per sequence"),
    wrong("lm_loss: sum instead of mean", "lm_loss", _loss('''    mask = attention_mask[:, 1:].bool()
    return F.cross_entropy(logits[:, :-1][mask], input_ids[:, 1:][mask], reduction="sum")
'''), expect="summed"),
    wrong("lm_loss: log of the softmax (unstable)", "lm_loss", _loss('''    log_probs = torch.log(torch.softmax(logits[:, :-1], dim=-1))
    mask = attention_mask[:, 1:].bool()
    return F.nll_loss(log_probs[mask], input_ids[:, 1:][mask])
'''), expect="large (x1000)"),
    wrong("lm_loss: exp without subtracting the max (unstable)", "lm_loss", _loss('''    scores = logits[:, :-1]
    log_probs = scores - torch.log(torch.exp(scores).sum(-1, keepdim=True))
    mask = attention_mask[:, 1:].float()
    picked = log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return -(picked * mask).sum() / mask.sum()
'''), expect="large (x1000)"),
    # Mistakes no listed variant explains: named from the loss's gradient (which position predicts which token, and
    # how much each weighs).
    wrong("lm_loss: shifted the wrong way", "lm_loss", _loss('''    mask = attention_mask[:, :-1].bool()
    return F.cross_entropy(logits[:, 1:][mask], input_ids[:, :-1][mask])
'''), expect="the shift goes the wrong way"),
    wrong("lm_loss: summed, then divided by the batch size", "lm_loss", _loss('''    mask = attention_mask[:, 1:].float()
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    return (losses * mask).sum() / logits.shape[0]
'''), expect="divided by another number than the count of real targets"),
    wrong("lm_loss: divided by the number of real tokens of the input", "lm_loss", _loss('''    V = logits.shape[-1]
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1), reduction="none")
    return (losses * attention_mask[:, 1:].reshape(-1)).sum() / attention_mask.sum()
'''), expect="divided by another number than the count of real targets"),
    wrong("lm_loss: each text's last target left out", "lm_loss", _loss('''    mask = attention_mask[:, 2:].bool()
    return F.cross_entropy(logits[:, :-2][mask], input_ids[:, 1:-1][mask])
'''), expect="real target token(s) (attention_mask 1) don't count"),
    correct("lm_loss: ignore_index", "lm_loss", _loss('''    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    return nn.CrossEntropyLoss()(logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1))
''')),
    correct("lm_loss: masked mean", "lm_loss", _loss('''    V = logits.shape[-1]
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1), reduction="none")
    mask = attention_mask[:, 1:].reshape(-1).float()
    return (losses * mask).sum() / mask.sum()
''')),
    correct("lm_loss: NLLLoss on flattened real positions", "lm_loss", _loss('''    keep = attention_mask[:, 1:].reshape(-1) == 1
    log_probs = F.log_softmax(logits[:, :-1].reshape(-1, logits.shape[-1]), dim=-1)
    return nn.NLLLoss(reduction="sum")(log_probs[keep], input_ids[:, 1:].reshape(-1)[keep]) / keep.sum()
''')),
    correct("lm_loss: log_softmax and gather", "lm_loss", _loss('''    log_probs = F.log_softmax(logits[:, :-1], dim=-1)
    picked = log_probs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = attention_mask[:, 1:].to(picked.dtype)
    return -(picked * mask).sum() / mask.sum()
''')),

    # ---- train_step --------------------------------------------------------------------------------------
    wrong("train_step: no zero_grad", "train_step", _step('''    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()
'''), expect="not reset"),
    wrong("train_step: no clipping", "train_step", _step('''    optimizer.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    optimizer.step()
    return loss.item()
'''), expect="not clipped before the optimizer step"),
    wrong("train_step: clipping after the step", "train_step", _step('''    optimizer.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    optimizer.step()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    return loss.item()
'''), expect="not clipped before the optimizer step"),
    wrong("train_step: no optimizer step", "train_step", _step('''    optimizer.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    return loss.item()
'''), expect="did not change"),
    wrong("train_step: zero_grad between backward and step", "train_step", _step('''    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()
'''), expect="did not change"),
    wrong("train_step: clip_grad_value_ instead of the norm", "train_step", _step('''    optimizer.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_value_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()
'''), expect="parameters after one step"),
    wrong("train_step: returns the loss tensor", "train_step", _step('''    optimizer.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss
'''), expect="should return a float"),
    correct("train_step: set_to_none=False, float(loss)", "train_step", _step('''    optimizer.zero_grad(set_to_none=False)
    logits = model(input_ids)
    loss = lm_loss(logits, input_ids, attention_mask)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    return float(loss)
''')),
    correct("train_step: model.zero_grad()", "train_step", _step('''    model.zero_grad()
    loss = lm_loss(model(input_ids), input_ids, attention_mask)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.detach().cpu().item()
''')),

    # ---- decode ----------------------------------------------------------------------------------------------
    wrong("decode: first position instead of the last", "decode",
          _greedy(pick="logits[:, 0].argmax(dim=-1, keepdim=True)"), expect="logits of the last position"),
    wrong("decode: broken for a batch (the seed's unsqueeze(0))", "decode",
          _greedy(pick="logits[:, -1].argmax(1).unsqueeze(0)"), expect="batch of 3 prompts"),
    wrong("decode: context not cropped", "decode", _greedy(context="input_ids"), expect="crop the context"),
    wrong("decode: context cropped to the first seq_len tokens", "decode", _greedy(context="input_ids[:, :model.seq_len]"),
          expect="last model.seq_len tokens"),
    wrong("decode: context cropped one token short", "decode", _greedy(context="input_ids[:, -(model.seq_len - 1):]"),
          expect="last model.seq_len tokens"),
    wrong("decode: first position, not in eval mode", "decode",
          _greedy(pick="logits[:, 0].argmax(dim=-1, keepdim=True)", eval_line=False), expect="put the model in eval mode"),
    wrong("decode: not in eval mode", "decode", _greedy(eval_line=False), expect="put the model in eval mode"),
    wrong("decode: sampling instead of greedy", "decode",
          _greedy(pick="torch.multinomial(logits[:, -1].softmax(dim=-1), 1)"), expect="does not sample"),
    wrong("decode: gradients computed", "decode", _decode(GREEDY_LOOP.format(
        context="input_ids[:, -model.seq_len:]", pick="logits[:, -1].argmax(dim=-1, keepdim=True)"), decorator=""),
        expect="turn gradient tracking off"),
    correct("decode: no_grad block, restores the training mode, topk", "decode", '''def decode(model, input_ids, max_new_tokens=32):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = input_ids if input_ids.size(1) <= model.seq_len else input_ids[:, -model.seq_len:]
            next_token = torch.topk(model(context)[:, -1, :], k=1, dim=-1).indices
            input_ids = torch.cat([input_ids, next_token], dim=1)
    model.train(was_training)
    return input_ids
'''),
    correct("decode: a while loop, softmax before the argmax, crop only when too long", "decode", '''@torch.no_grad()
def decode(model, input_ids, max_new_tokens=32):
    model.eval()
    out = input_ids.clone()
    while out.shape[1] < input_ids.shape[1] + max_new_tokens:
        context = out if out.shape[1] <= model.seq_len else out[:, out.shape[1] - model.seq_len:]
        probabilities = F.softmax(model(context)[:, -1, :], dim=-1)
        out = torch.cat([out, probabilities.argmax(dim=-1).unsqueeze(-1)], dim=-1)
    return out
'''),
]
