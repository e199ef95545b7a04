"""The train step (fit, evaluate, log one candidate) and the register-and-promote step."""
