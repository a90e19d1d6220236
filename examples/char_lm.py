"""A character-level language model, written for torch.nn.LSTM, trained on a text this repository
ships. Pass --lstm1997 to swap in the 1997 LSTM: the only line that changes is the constructor.

    python examples/char_lm.py [--lstm1997] [--steps 300]
"""
import argparse
import math
import os
import time

import torch
from torch import nn

import lstm1997

TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "carousel.txt")


class CharModel(nn.Module):
    def __init__(self, vocab_size, hidden_size, num_layers, dropout, use_lstm1997):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 32)
        lstm_class = lstm1997.LSTM if use_lstm1997 else nn.LSTM  # the swap
        self.rnn = lstm_class(32, hidden_size, num_layers=num_layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens, state=None):
        self.rnn.flatten_parameters()
        output, state = self.rnn(self.embed(tokens), state)
        return self.head(output), state


@torch.no_grad()
def sample(model, itos, stoi, prompt, length):
    model.eval()
    tokens = torch.tensor([[stoi[c] for c in prompt]])
    logits, state = model(tokens)
    text = prompt
    for _ in range(length):
        next_token = torch.multinomial(torch.softmax(logits[0, -1] / 0.8, dim=0), 1)
        text += itos[next_token.item()]
        logits, state = model(next_token.view(1, 1), state)
    model.train()
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lstm1997", action="store_true", help="use lstm1997.LSTM instead of torch.nn.LSTM")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    with open(TEXT) as f:
        text = f.read()
    itos = sorted(set(text))
    stoi = {c: i for i, c in enumerate(itos)}
    data = torch.tensor([stoi[c] for c in text])
    model = CharModel(len(itos), args.hidden_size, num_layers=2, dropout=0.1, use_lstm1997=args.lstm1997)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    print(f"{len(text)} characters, {len(itos)} symbols; {model.rnn}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        offsets = torch.randint(0, len(data) - args.seq_len - 1, (args.batch_size,))
        batch = torch.stack([data[o : o + args.seq_len + 1] for o in offsets])
        logits, _ = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(itos)), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({loss.item() / math.log(2):.2f} bits/char)"
                  f"  {time.perf_counter() - start:5.1f}s", flush=True)
    print(repr(sample(model, itos, stoi, "The ", 120)))
    return loss.item()


if __name__ == "__main__":
    main()
