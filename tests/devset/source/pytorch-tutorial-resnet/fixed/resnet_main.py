# Devset (evalguard): bug shape from yunjey/pytorch-tutorial issue #96 ("Residual network examples do
# not call eval() before testing", fixed in PR #99): train, then a module-level test loop over the
# test loader with no eval(). Written anew for evalguard.
import torch
import torch.nn as nn


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class ResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.blocks = nn.Sequential(ResidualBlock(16), ResidualBlock(16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(x).mean(dim=(2, 3)))


train_loader = torch.utils.data.DataLoader(range(4))
test_loader = torch.utils.data.DataLoader(range(4))
model = ResNet()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(80):
    for images, labels in train_loader:
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

model.eval()
correct = total = 0
for images, labels in test_loader:
    outputs = model(images)
    correct += (outputs.argmax(1) == labels).sum().item()
    total += labels.size(0)
print("accuracy", 100 * correct / total)
