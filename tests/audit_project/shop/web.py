"""Flask-shaped routes."""

from flask import Blueprint, Flask
from opentelemetry import trace

tracer = trace.get_tracer(__name__)
app = Flask(__name__)
bp = Blueprint("admin", __name__)


@app.route("/")
def index():  # expect: missing-span
    return "ok"


@app.get("/orders")
@tracer.start_as_current_span("orders")
def orders():
    return []


@bp.route("/users")
def users():
    with tracer.start_as_current_span("users"):
        return []


@app.post("/save")
def save():  # expect: missing-span
    tracer.start_as_current_span("save")  # expect: span-not-entered
    return "saved"


def _private_helper():
    return 1
