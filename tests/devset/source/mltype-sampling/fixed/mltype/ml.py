# Shape of the bug in https://github.com/jankrepl/mltype/issues/11 (evalguard's own words):
# text is sampled from the character network after each training epoch, while the network
# (an LSTM with dropout) is still in training mode.
import torch
from torch import nn


class SingleCharacterLSTM(nn.Module):
    def __init__(self, vocab, hidden=64):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, hidden, num_layers=2, dropout=0.3, batch_first=True)
        self.linear = nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.linear(self.lstm(self.embedding(x))[0][:, -1])


def sample_text(n_chars, network, initial):
    text = list(initial)
    network.eval()
    with torch.no_grad():
        for _ in range(n_chars):
            probs = torch.softmax(network(torch.tensor([text[-10:]])), dim=-1)
            text.append(int(torch.multinomial(probs, 1)))
    return text


def train(network, loader, optimizer, epochs):
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(network(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(sample_text(20, network, [1, 2, 3]))
