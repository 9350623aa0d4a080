from seq2seq.evaluator import Evaluator


class SupervisedTrainer:
    def __init__(self, loss, optimizer):
        self.loss = loss
        self.optimizer = optimizer
        self.evaluator = Evaluator(loss)

    def train(self, model, data, dev_data, epochs=5):
        for epoch in range(epochs):
            model.train(True)
            for src, tgt in data:
                self.loss.reset()
                self.loss.eval_batch(model(src, tgt), tgt)
                self.optimizer.zero_grad()
                self.loss.backward()
                self.optimizer.step()
            dev_loss, accuracy = self.evaluator.evaluate(model, dev_data)
            print(epoch, dev_loss, accuracy)
        return model
