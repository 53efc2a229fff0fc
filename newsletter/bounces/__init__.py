"""Bounces and complaints read back from mail: readers, classification, actions."""
