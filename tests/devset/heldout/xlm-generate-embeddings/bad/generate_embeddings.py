# Held-out case (evalguard issue 27): shape of facebookresearch/XLM issue #86 ("Generate embeddings",
# fixed in commit 03d7e94): a notebook-style script rebuilds the transformer from a reloaded
# checkpoint and computes sentence embeddings with model('fwd', ...) while it is still in training
# mode (dropout on). Written anew.
import torch

from xlm.data.dictionary import Dictionary
from xlm.model.transformer import TransformerModel
from xlm.utils import AttrDict

model_path = "mlm_tlm_xnli15_1024.pth"
reloaded = torch.load(model_path, weights_only=True)
params = AttrDict(reloaded["params"])
dico = Dictionary(reloaded["dico_id2word"], reloaded["dico_word2id"], reloaded["dico_counts"])
params.n_words = len(dico)

model = TransformerModel(params, dico, True, True)
model.load_state_dict(reloaded["model"])

sentences = [("the following secondary charges apply", "en"), ("les frais suivants s'appliquent", "fr")]
bs = len(sentences)
slen = max(len(s.split()) for s, _ in sentences) + 2
word_ids = torch.LongTensor(slen, bs).fill_(params.pad_index)
for i, (s, _) in enumerate(sentences):
    ids = [params.eos_index] + [dico.index(w) for w in s.split()] + [params.eos_index]
    word_ids[: len(ids), i] = torch.LongTensor(ids)
lengths = (word_ids != params.pad_index).sum(0)
langs = torch.LongTensor([params.lang2id[lang] for _, lang in sentences]).unsqueeze(0).expand(slen, bs)

tensor = model("fwd", x=word_ids, lengths=lengths, langs=langs, causal=False).contiguous()
embeddings = tensor[0]
print(embeddings.size())
