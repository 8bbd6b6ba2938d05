// Labelling grid: click a tile to select it, shift-click to select the range from the last
// clicked tile, "select this page" / "clear", and "all matching the filter" (every page: the
// server re-runs the filter). The selection is plain checkboxes, so the form also works without JS.
(function () {
  const form = document.getElementById("bulk");
  if (!form) return;
  const tiles = Array.from(form.querySelectorAll(".lab-tile"));
  const boxes = tiles.map((t) => t.querySelector('input[name="ids"]'));
  const all = document.getElementById("select-all");
  const count = document.getElementById("selected-count");
  const action = document.getElementById("action");
  const matching = Number(form.dataset.matching || 0);
  let anchor = null; // index of the last tile clicked (the start of a shift-click range)

  function refresh() {
    const everything = all && all.checked;
    let n = 0;
    tiles.forEach((tile, i) => {
      const on = everything || boxes[i].checked;
      tile.classList.toggle("selected", on);
      boxes[i].disabled = everything;
      if (boxes[i].checked) n += 1;
    });
    count.textContent = everything ? `all ${matching}` : String(n);
  }

  function pick(i, shift) {
    // the box at i has its new state already; a shift-click gives the whole range that state
    if (shift && anchor !== null && anchor !== i) {
      const [lo, hi] = anchor < i ? [anchor, i] : [i, anchor];
      for (let j = lo; j <= hi; j += 1) boxes[j].checked = boxes[i].checked;
    }
    anchor = i;
    refresh();
  }

  tiles.forEach((tile, i) => {
    const box = boxes[i];
    tile.addEventListener("click", (event) => {
      if (event.target.closest("a") || (all && all.checked)) return;
      if (event.target !== box) {
        // a click on the thumbnail (inside the checkbox's label): toggle here, not through the label
        event.preventDefault();
        box.checked = !box.checked;
      }
      pick(i, event.shiftKey);
    });
    // a shift-click would otherwise select the page's text
    tile.addEventListener("mousedown", (event) => {
      if (event.shiftKey) event.preventDefault();
    });
  });

  document.getElementById("select-page").addEventListener("click", () => {
    boxes.forEach((b) => (b.checked = true));
    refresh();
  });
  document.getElementById("select-none").addEventListener("click", () => {
    boxes.forEach((b) => (b.checked = false));
    if (all) all.checked = false;
    anchor = null;
    refresh();
  });
  if (all) all.addEventListener("change", refresh);

  form.addEventListener("submit", (event) => {
    const what = action.options[action.selectedIndex].text;
    if (all && all.checked) {
      if (!window.confirm(`Label all ${matching} images matching the filter (on every page) as ${what}?`)) {
        event.preventDefault();
      }
      return;
    }
    const n = boxes.filter((b) => b.checked).length;
    if (n === 0) {
      event.preventDefault();
      window.alert("Select images first (click them), or tick 'all images matching the filter'.");
    }
  });

  refresh();
})();
