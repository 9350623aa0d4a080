# Shape of databricks-academy/llm-foundation-models#5, in evalguard's own words: a lab builds a
# TransformerEncoder and computes sentence embeddings with it while it is still in training mode,
# so dropout makes two runs on the same sentence disagree.
import torch
import torch.nn as nn

vocab = {w: i for i, w in enumerate("the cat sat on a mat dog ran".split())}
embedding = nn.Embedding(len(vocab), 32)
encoder_layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dropout=0.1, batch_first=True)
encoder = nn.TransformerEncoder(encoder_layer, num_layers=2)
encoder.eval()


def sentence_embedding(sentence):
    ids = torch.tensor([[vocab[w] for w in sentence.split()]])
    return encoder(embedding(ids)).mean(dim=1)


first = sentence_embedding("the cat sat on a mat")
second = sentence_embedding("the dog ran")
print(torch.cosine_similarity(first, second))
