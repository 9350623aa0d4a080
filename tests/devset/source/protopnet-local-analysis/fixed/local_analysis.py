# Devset (evalguard): bug shape from cfchen-duke/ProtoPNet issue #12 ("model.eval() is missing after
# loading the model" in local_analysis.py): a whole pickled network is loaded, wrapped in
# DataParallel and run on a test image, with no no_grad and no eval(). Written anew for evalguard.
import torch

load_model_path = "saved_models/ppnet.pth"
ppnet = torch.load(load_model_path, weights_only=False)  # evalguard: ignore[EG903]
ppnet = ppnet.cuda()
ppnet.eval()
ppnet_multi = torch.nn.DataParallel(ppnet)

images_test = torch.randn(1, 3, 224, 224).cuda()
labels_test = torch.tensor([3])
logits, min_distances = ppnet_multi(images_test)
print("predicted", logits.argmax(dim=1).item(), "actual", labels_test.item())
