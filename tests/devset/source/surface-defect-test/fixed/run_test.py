# Devset (evalguard): bug shape from mengcius/Surface-Defect-Detection issue #2 ("segment_net.eval()
# # decision_net.eval()": the second network's eval() is commented out in the test script).
# Written anew for evalguard.
import torch

from nets import DecisionNet, SegmentNet

segment_net = SegmentNet()
decision_net = DecisionNet()
segment_net.load_state_dict(torch.load("segment.pth", weights_only=True))
decision_net.load_state_dict(torch.load("decision.pth", weights_only=True))
segment_net.eval()
decision_net.eval()

testloader = torch.utils.data.DataLoader(range(4))
for i, batch in enumerate(testloader):
    img = batch["img"]
    rst = segment_net(img)
    f, seg = rst["f"], rst["seg"]
    prediction = decision_net(f, seg)
    print(i, float(prediction))
