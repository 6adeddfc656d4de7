from tests.helpers import eventually


async def test_two_clients_converge(connect):
    a = await connect("doc")
    b = await connect("doc")
    a.text.insert(0, "hello")
    await eventually(lambda: str(b.text) == "hello")
    b.text.insert(5, " world")
    await eventually(lambda: str(a.text) == "hello world")
