"""Fixtures of the API tests: a small index built with the fake encoder, and app factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from matcher.matcher import STORE_FILE, Matcher
from matcher.records import EnterpriseNeed, ResearchResult
from matcher.store import RecordStore
from models.fake import FakeEncoder

KEY = "test-key-7f3a9c"

RESULTS = [
    ResearchResult(id="r-acid", title="磺化尾气酸雾净化装置", description="采用多级喷淋与除雾器净化磺化车间酸雾",
                   keywords=["酸雾", "废气治理"], field="环境工程", region="河南省郑州市", maturity="中试",
                   transfer_modes=["转让"]),
    ResearchResult(id="r-lith", title="高活性氟化锂制备方法", description="锂电池电解质用高纯氟化锂",
                   keywords=["氟化锂", "锂电池"], field="化学工程", region="河南省新乡市", maturity="产业化",
                   transfer_modes=["许可"]),
    ResearchResult(id="r-fruit", title="浆果采后涂膜保鲜技术", description="草莓葡萄涂膜保鲜，延长货架期",
                   keywords=["保鲜", "涂膜"], field="食品科学", region="山东省", maturity="小试",
                   transfer_modes=["合作开发"]),
    ResearchResult(id="r-mine", title="煤矿巷道围岩变形监测系统", description="巷道围岩稳定性监测与支护优化",
                   keywords=["围岩", "支护"], field="矿业工程", region="山西省", maturity="中试"),
]
NEEDS = [
    EnterpriseNeed(id="n-acid", title="磺化生产线酸雾治理", description="磺化车间酸雾排放超标，需要高效酸雾净化技术",
                   industry="化工", company="某化工公司", region="河南"),
    EnterpriseNeed(id="n-fruit", title="草莓保鲜", description="草莓采后腐烂率高，需要涂膜保鲜技术",
                   industry="食品", region="山东"),
]


def build_index(index_dir: Path) -> None:
    """Write a small live index (record store + snapshot) to ``index_dir``."""
    index_dir.mkdir(parents=True, exist_ok=True)
    store = RecordStore(index_dir / STORE_FILE)
    Matcher.build(RESULTS, NEEDS, encoder=FakeEncoder(), store=store).save(index_dir)
    store.close()


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    path = tmp_path / "index"
    build_index(path)
    return path


ClientFactory = Callable[..., Any]


@pytest.fixture
def make_client(index_dir: Path) -> Iterator[ClientFactory]:
    """``with make_client(**settings) as client``: the app over the test index, lifespan running."""

    @contextmanager
    def factory(**overrides: Any) -> Iterator[TestClient]:
        settings = ApiSettings(index_dir=index_dir, **overrides)
        app = create_app(settings, Matcher.load(index_dir, FakeEncoder()))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    yield factory


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    """Writes allowed with ``KEY``."""
    with make_client(api_keys=KEY) as c:
        c.headers["X-API-Key"] = KEY
        yield c
