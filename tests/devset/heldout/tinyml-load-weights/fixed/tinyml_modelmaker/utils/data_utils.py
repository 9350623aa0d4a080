import os
import urllib.request


def download_url(url, root):
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, os.path.basename(url))
    urllib.request.urlretrieve(url, path)
    return path
