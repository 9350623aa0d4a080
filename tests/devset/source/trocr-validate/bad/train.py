# Devset (evalguard): bug shape from rsommerfeld/trocr issue #9 ("During training you don't use
# model.eval() when you call to validate()"): the pretrained model starts in eval mode, the training
# loop switches it to train(), and validate() then runs it in training mode. Written anew.
import torch
from transformers import TrOCRProcessor, VisionEncoderDecoderModel


def validate(model, processor, val_dataloader):
    correct = 0
    for pixel_values, labels in val_dataloader:
        generated = model.generate(pixel_values)
        texts = processor.batch_decode(generated, skip_special_tokens=True)
        correct += sum(t == label for t, label in zip(texts, labels))
    return correct


def train(train_dataloader, val_dataloader, num_epochs):
    processor = TrOCRProcessor.from_pretrained("microsoft/trocr-base-handwritten")
    model = VisionEncoderDecoderModel.from_pretrained("microsoft/trocr-base-handwritten")
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    for epoch in range(num_epochs):
        model.train()
        for pixel_values, labels in train_dataloader:
            loss = model(pixel_values=pixel_values, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        print("epoch", epoch, "correct", validate(model, processor, val_dataloader))
