# Held-out case (evalguard issue 27): shape of falloutdurham/beginners-pytorch-deep-learning PR #44
# ("Add model.eval()" for inference in classify_tweet()): a notebook exported as a script trains an
# LSTM with dropout at top level, then a helper classifies new tweets with the global model.
# Written anew.
import torch
import torch.nn as nn
import torch.optim as optim


class OurFirstLSTM(nn.Module):
    def __init__(self, hidden_size, embedding_dim, vocab_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.encoder = nn.LSTM(input_size=embedding_dim, hidden_size=hidden_size, num_layers=2, dropout=0.3)
        self.predictor = nn.Linear(hidden_size, 2)

    def forward(self, seq):
        output, (hidden, _) = self.encoder(self.embedding(seq))
        return self.predictor(hidden[-1])


VOCAB = {"<unk>": 0}


def tokenize(text):
    return [VOCAB.setdefault(w, len(VOCAB)) if len(VOCAB) < 20000 else 0 for w in text.lower().split()]


model = OurFirstLSTM(100, 300, 20002)
optimizer = optim.Adam(model.parameters(), lr=2e-2)
criterion = nn.CrossEntropyLoss()
train_iterator = [(torch.randint(0, 20002, (20, 32)), torch.randint(0, 2, (32,))) for _ in range(4)]


def train(epochs, model, optimizer, criterion, train_iterator):
    for _ in range(epochs):
        model.train()
        for seq, label in train_iterator:
            optimizer.zero_grad()
            loss = criterion(model(seq), label)
            loss.backward()
            optimizer.step()


train(5, model, optimizer, criterion, train_iterator)


def classify_tweet(tweet):
    categories = {0: "Negative", 1: "Positive"}
    processed = torch.tensor(tokenize(tweet)).unsqueeze(1)
    model.eval()
    return categories[model(processed).argmax().item()]


print(classify_tweet("A sandwich is the best food ever"))
