# Held-out case (evalguard issue 27): shape of jfzhang95/pytorch-video-recognition issue #18
# ("inference.py 中的model.train() 应该是model.eval()吧", fixed by the author): the inference script
# loads a checkpoint and then calls model.train() before classifying webcam clips. Written anew.
import cv2
import numpy as np
import torch

from network import C3D_model


def center_crop(frame):
    return np.array(frame[8:120, 30:142, :]).astype(np.uint8)


def main():
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    with open("./dataloaders/ucf_labels.txt") as f:
        class_names = f.readlines()
    model = C3D_model.C3D(num_classes=101)
    checkpoint = torch.load("run/run_1/models/C3D-ucf101_epoch-39.pth.tar", map_location="cpu",
                            weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device)
    model.train()

    cap = cv2.VideoCapture("v_Basketball_g01_c01.avi")
    clip = []
    retaining = True
    while retaining:
        retaining, frame = cap.read()
        if not retaining and frame is None:
            continue
        clip.append(center_crop(cv2.resize(frame, (171, 128))) - np.array([[[90.0, 98.0, 102.0]]]))
        if len(clip) == 16:
            inputs = torch.from_numpy(np.array(clip).astype(np.float32)).permute(3, 0, 1, 2).unsqueeze(0)
            with torch.no_grad():
                outputs = model.forward(inputs.to(device))
            probs = torch.nn.Softmax(dim=1)(outputs)
            label = torch.max(probs, 1)[1].item()
            print(class_names[label].split(" ")[-1].strip(), probs[0][label].item())
            clip.pop(0)
    cap.release()


if __name__ == "__main__":
    main()
