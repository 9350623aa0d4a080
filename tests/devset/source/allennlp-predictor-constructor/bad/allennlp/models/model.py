# Shape of allenai/allennlp#3888 (fixed by PR 3899), in evalguard's own words: a Predictor built
# from its constructor keeps the model it is handed in training mode.
import torch


class Model(torch.nn.Module):
    def __init__(self, vocab_size, hidden=64, dropout=0.3):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, hidden)
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(hidden, 2)

    def forward(self, tokens):
        return self.out(self.drop(self.embed(tokens).mean(1)))
