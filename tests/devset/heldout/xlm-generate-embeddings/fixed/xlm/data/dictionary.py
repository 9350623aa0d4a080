class Dictionary:
    def __init__(self, id2word, word2id, counts):
        self.id2word, self.word2id, self.counts = id2word, word2id, counts

    def __len__(self):
        return len(self.id2word)

    def index(self, word):
        return self.word2id.get(word, 3)
