# Held-out case (evalguard issue 27): shape of bentrevett/pytorch-sentiment-analysis issue #31
# ("forgot model.eval() in predict_sentiment function", fixed in the notebooks): the helper takes the
# model as a parameter and relied on an earlier evaluate() call having switched it to eval mode.
# Written anew.
import torch

from models import RNN
from training import evaluate, train


def predict_sentiment(model, tokenizer, vocab, sentence):
    indexed = [vocab.get(t, 0) for t in tokenizer(sentence)]
    tensor = torch.LongTensor(indexed).unsqueeze(1)
    length = torch.LongTensor([len(indexed)])
    prediction = torch.sigmoid(model(tensor, length))
    return prediction.item()


if __name__ == "__main__":
    vocab = {"<unk>": 0, "this": 1, "film": 2, "is": 3, "great": 4, "terrible": 5}
    model = RNN(len(vocab), 100, 256, 1, n_layers=2, bidirectional=True, dropout=0.5)
    optimizer = torch.optim.Adam(model.parameters())
    data = [(torch.randint(0, 6, (7, 4)), torch.full((4,), 7), torch.randint(0, 2, (4,)).float())]
    for epoch in range(3):
        train(model, data, optimizer)
        evaluate(model, data)
    torch.save(model.state_dict(), "tut2-model.pt")

    # later, in a fresh session: rebuild the model, load the weights, classify a review
    model = RNN(len(vocab), 100, 256, 1, n_layers=2, bidirectional=True, dropout=0.5)
    model.load_state_dict(torch.load("tut2-model.pt", weights_only=True))
    print(predict_sentiment(model, str.split, vocab, "this film is terrible"))
