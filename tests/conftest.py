"""Session-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny tensors: one thread is faster and immune to a busy second core."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def notes():
    """napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    got = []
    notification_manager.notification_ready.connect(got.append)
    yield got
    notification_manager.notification_ready.disconnect(got.append)


@pytest.fixture(scope="session")
def napari_plugins():
    """npe2 discovers the installed plugins once per session, as napari does at start-up
    (a second discovery would register the plugin's commands twice)."""
    from napari.plugins import _initialize_plugins

    _initialize_plugins()


@pytest.fixture
def settings_in_tmp(tmp_path, monkeypatch):
    """The widget's settings file in this test's own folder (no test sees another's)."""
    monkeypatch.setenv("NAPARI_PKN_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def viewer_widget(make_napari_viewer, settings_in_tmp):
    """A viewer and the PKN widget docked in it."""
    from napari_pkn._qt._widget import PKNWidget

    viewer = make_napari_viewer()
    widget = PKNWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PKN restoration")
    return viewer, widget


@pytest.fixture
def menu_widget(make_napari_viewer, settings_in_tmp):
    """A viewer and the PKN widget as napari makes it from the Plugins menu (it sees the
    viewer through proxies)."""
    from napari_pkn._qt._widget import PKNWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pkn", "PKN restoration")
    if not isinstance(widget, PKNWidget):
        raise TypeError(f"the menu made a {type(widget).__name__}, not the PKN widget")
    return viewer, widget
