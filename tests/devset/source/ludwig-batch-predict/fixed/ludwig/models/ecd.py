# Shape of ludwig-ai/ludwig#1714, in evalguard's own words.
import torch


class ECD(torch.nn.Module):
    def __init__(self, n_in, n_out, dropout=0.2):
        super().__init__()
        self.combiner = torch.nn.Sequential(torch.nn.Linear(n_in, 64), torch.nn.Dropout(dropout), torch.nn.ReLU())
        self.decoder = torch.nn.Linear(64, n_out)

    def forward(self, inputs):
        return self.decoder(self.combiner(inputs))
