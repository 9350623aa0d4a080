# Devset (evalguard): bug shape from SeanNaren/deepspeech.pytorch PR #22 ("test in eval mode: fix
# dropout when model is not training"): after each epoch the validation loop runs the model that the
# epoch put in training mode. Written anew for evalguard.
import torch

from model import DeepSpeech

train_loader = torch.utils.data.DataLoader(range(4))
test_loader = torch.utils.data.DataLoader(range(4))
model = DeepSpeech()
criterion = torch.nn.CTCLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=3e-4, momentum=0.9)

for epoch in range(70):
    model.train()
    for inputs, targets, input_sizes, target_sizes in train_loader:
        out = model(inputs)
        loss = criterion(out, targets, input_sizes, target_sizes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    total_wer = 0
    for i, (inputs, targets, input_sizes, target_sizes) in enumerate(test_loader):
        out = model(inputs)
        total_wer += float(out.argmax(-1).ne(targets).float().mean())
    print("epoch", epoch, "WER", total_wer / len(test_loader))
