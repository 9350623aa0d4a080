from torch import nn


class GPT2LMNoBiasModel(nn.Module):
    def __init__(self, vocab_size=1024, n_embd=128, n_layer=2, n_head=4, block_size=256, dropout=0.3):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(n_embd, n_head, 4 * n_embd, dropout=dropout, batch_first=True)
        self.h = nn.TransformerEncoder(layer, n_layer)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx):
        return self.lm_head(self.h(self.drop(self.wte(idx))))
