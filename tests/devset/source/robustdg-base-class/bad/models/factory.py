# Devset (evalguard): shape of microsoft/robustdg -- the network comes from an in-repo factory.
import torchvision


def get_model(name, num_classes):
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=num_classes)
    return torchvision.models.densenet121(num_classes=num_classes)
