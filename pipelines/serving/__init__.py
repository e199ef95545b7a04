"""Serving: a trained model bundled with its id encodings, recommending by raw ids."""
