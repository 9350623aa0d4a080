# Devset (evalguard): shape of SeanNaren/deepspeech.pytorch model.py -- "DeepSpeech" is an nn.Module
# that is not named like one, with BatchNorm and recurrent layers.
import torch.nn as nn


class BatchRNN(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.batch_norm = nn.BatchNorm1d(input_size)
        self.rnn = nn.GRU(input_size, hidden_size, bidirectional=True)

    def forward(self, x):
        return self.rnn(self.batch_norm(x.transpose(1, 2)).transpose(1, 2))[0]


class DeepSpeech(nn.Module):
    def __init__(self, hidden=400, layers=3):
        super().__init__()
        self.rnns = nn.Sequential(*[BatchRNN(hidden, hidden) for _ in range(layers)])
        self.fc = nn.Linear(hidden * 2, 29)

    def forward(self, x):
        return self.fc(self.rnns(x))
