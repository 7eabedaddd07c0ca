import json
import tests.test_hostile_push as t
from tests.test_hostile_push import host, projects, attack  # noqa
def test_dbg(attack, host):
    made = attack("secret-dbg", t._secret_files(4.0), [f"--allow-secret={t.SECRET}"])
    o = made.run()
    print(o.output[-3000:])
    print(o.push)
    for r in o.records:
        print(r["metadata"]["name"], json.dumps(r["status"])[:1500])
