# Held-out case (evalguard issue 27): shape of milesial/Pytorch-UNet issue #31 ("Switch net.train()
# to net.eval() during evaluation?", fixed in 3ab8272): eval_net() in its own file scores the
# validation set with a net the training script passes in; the U-Net has BatchNorm2d. Written anew.
import torch

from dice_loss import dice_coeff


def eval_net(net, dataset, gpu=False):
    net.eval()
    tot = 0
    for i, (img, true_mask) in enumerate(dataset):
        img = torch.from_numpy(img).unsqueeze(0)
        true_mask = torch.from_numpy(true_mask).unsqueeze(0)
        if gpu:
            img, true_mask = img.cuda(), true_mask.cuda()
        mask_pred = (net(img)[0] > 0.5).float()
        tot += dice_coeff(mask_pred, true_mask).item()
    return tot / (i + 1)
