"""Loaders for the datasets shipped beside the project (CIFAR-100) and folder datasets."""
