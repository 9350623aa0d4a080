# Devset (evalguard): bug shape from Novartis/torchsurv PR #65 ("set model to eval mode before
# parameters evaluation on test"): after training, a test batch is drawn and the Sequential model
# (with BatchNorm and Dropout) is run under no_grad only. Written anew for evalguard.
import torch

dataloader_train = torch.utils.data.DataLoader(range(4))
dataloader_test = torch.utils.data.DataLoader(range(4))
model = torch.nn.Sequential(
    torch.nn.BatchNorm1d(20),
    torch.nn.Linear(20, 32),
    torch.nn.ReLU(),
    torch.nn.Dropout(),
    torch.nn.Linear(32, 1),
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(100):
    for x, (event, time) in dataloader_train:
        loss = (model(x).squeeze() - time).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

with torch.no_grad():
    x, (event, time) = next(iter(dataloader_test))
    estimate = model(x)
print(estimate.mean())
