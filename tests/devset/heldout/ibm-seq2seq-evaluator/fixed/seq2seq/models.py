import torch.nn as nn


class EncoderRNN(nn.Module):
    def __init__(self, vocab, hidden, dropout_p=0.2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.drop = nn.Dropout(dropout_p)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True, dropout=dropout_p, num_layers=2)

    def forward(self, src):
        return self.rnn(self.drop(self.embedding(src)))


class Seq2seq(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, src, tgt=None):
        outputs, hidden = self.encoder(src)
        return self.decoder(outputs, hidden, tgt)
