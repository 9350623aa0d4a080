# dee1024/pytorch-captcha-recognition issue 6: predictions differ between runs (dropout active).
import torch

import my_dataset
from captcha_cnn_model import CNN


def main():
    cnn = CNN()
    cnn.load_state_dict(torch.load("model.pkl", weights_only=True))
    cnn.eval()
    print("load cnn net.")
    predict_dataloader = my_dataset.get_predict_data_loader()
    for images, _ in predict_dataloader:
        predict_label = cnn(images)
        text = "".join(str(int(i)) for i in predict_label.view(-1, 36).argmax(1))
        print(text)


if __name__ == "__main__":
    main()
