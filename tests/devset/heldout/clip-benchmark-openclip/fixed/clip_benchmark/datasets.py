import torchvision


def build_dataset(name, transform=None, root="data"):
    dataset = torchvision.datasets.CIFAR10(root=root, train=False, transform=transform, download=True)
    dataset.templates = ["a photo of a {c}."]
    return dataset
