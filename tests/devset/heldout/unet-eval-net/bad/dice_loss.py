def dice_coeff(pred, target, eps=1e-4):
    inter = (pred.view(-1) * target.view(-1)).sum()
    return (2 * inter + eps) / (pred.sum() + target.sum() + eps)
