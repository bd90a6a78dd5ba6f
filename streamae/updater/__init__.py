"""Keeping models current: replay buffer, fine-tuning, validation gate, model store."""
