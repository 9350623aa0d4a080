from setuptools import setup

setup(
    name="weightwatcher",
    packages=["weightwatcher"],
    install_requires=["numpy", "matplotlib", "powerlaw", "pandas", "torch>=1.10"],
)
