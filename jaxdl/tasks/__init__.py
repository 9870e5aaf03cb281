"""Task registry: name -> builder (and kind). Builders take plain values."""
from jaxdl.tasks import classic, synthetic

SEQUENCE_TASKS = {
    "echo": synthetic.echo,
    "adding": synthetic.adding,
    "sine": synthetic.sine,
}

# name -> (builder, kind); kind picks the trainer and the models that fit
CLASSIC_TASKS = {
    "and": (classic.and_, "perceptron"),
    "or": (classic.or_, "perceptron"),
    "xor": (classic.xor, "perceptron"),
    "salary": (classic.salary, "linear"),
    "digits": (classic.digits, "classify"),
    "mnist": (classic.mnist, "classify"),
}
