# Held-out case (evalguard issue 27): shape of spoonnotfound/pytorch_deephash PR #21 ("should add
# net.eval(), otherwise test result may vary every time"): the evaluation script restores the hashing
# network from a checkpoint and a helper computes binary codes for database and query sets with the
# global net. Written anew.
import argparse

import torch
import torchvision.transforms as transforms
from torchvision import datasets

from net import AlexNetPlusLatent

parser = argparse.ArgumentParser(description="Deep Hashing evaluate mAP")
parser.add_argument("--pretrained", type=str, default="92", metavar="pretrained_model")
parser.add_argument("--bits", type=int, default=48, metavar="bts")
args = parser.parse_args()

transform_test = transforms.Compose([transforms.Resize(227), transforms.ToTensor(),
                                     transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
trainset = datasets.CIFAR10(root="./data", train=True, download=True, transform=transform_test)
trainloader = torch.utils.data.DataLoader(trainset, batch_size=100, shuffle=False)
testset = datasets.CIFAR10(root="./data", train=False, download=True, transform=transform_test)
testloader = torch.utils.data.DataLoader(testset, batch_size=100, shuffle=False)

net = AlexNetPlusLatent(args.bits)
net.load_state_dict(torch.load("./model/%s" % args.pretrained, weights_only=True))


def binary_output(dataloader):
    full_batch_output = torch.FloatTensor()
    full_batch_label = torch.LongTensor()
    with torch.no_grad():
        for inputs, targets in dataloader:
            outputs, _ = net(inputs)
            full_batch_output = torch.cat((full_batch_output, outputs), 0)
            full_batch_label = torch.cat((full_batch_label, targets), 0)
    return torch.round(full_batch_output), full_batch_label


train_binary, train_label = binary_output(trainloader)
test_binary, test_label = binary_output(testloader)
print(train_binary.shape, test_binary.shape)
