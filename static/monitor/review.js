// Review queue keys. Every action is a plain HTML form or link on the page; the keys only
// press them: g genuine (a false positive), a attack, 1-9 attack type, s skip, u undo,
// j / k next / previous, ? shows the keys.
(function () {
  const root = document.getElementById("review");
  if (!root) return;
  const byId = (id) => document.getElementById(id);
  const help = byId("review-help");
  let busy = false; // one action per page: a second key press while the first is on its way is ignored

  function start() {
    busy = true;
    root.classList.add("busy");
  }

  function submit(formId, buttonId) {
    const form = byId(formId);
    const button = buttonId ? byId(buttonId) : null;
    if (busy || !form || (buttonId && (!button || button.disabled))) return false;
    start();
    if (form.requestSubmit) form.requestSubmit(button || undefined);
    else if (button) button.click();
    else form.submit();
    return true;
  }

  function follow(linkId) {
    const link = byId(linkId);
    if (busy || !link) return false;
    start();
    window.location.assign(link.href);
    return true;
  }

  function chooseType(digit) {
    const radio = root.querySelector(`#verdict-form input[name="attack_type"][data-key="${digit}"]`);
    if (!radio) return false;
    radio.checked = true;
    return true;
  }

  function typing(target) {
    if (!target || target.isContentEditable) return Boolean(target);
    const tag = target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    return tag === "INPUT" && !["radio", "checkbox", "button", "submit", "reset"].includes(target.type);
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur(); // back to the keys
      return;
    }
    const mode = root.dataset.mode;
    let handled = false;
    switch (event.key) {
      case "g":
        handled = submit("verdict-form", "btn-genuine");
        break;
      case "a":
        handled = submit("verdict-form", "btn-attack");
        break;
      case "s":
        handled = submit("skip-form");
        break;
      case "u":
        handled = submit("undo-form");
        break;
      case "j":
        // looking back: one step forward; in the queue the next image means skipping this one
        handled = mode === "history" ? follow("next") : submit("skip-form");
        break;
      case "k":
        handled = follow("prev");
        break;
      case "?":
        if (help) help.open = !help.open;
        handled = Boolean(help);
        break;
      case "Escape":
        if (help && help.open) {
          help.open = false;
          handled = true;
        }
        break;
      default:
        if (/^[1-9]$/.test(event.key)) handled = chooseType(event.key);
    }
    if (handled) event.preventDefault();
  });

  // back from the browser's cache after a navigation: the keys work again
  window.addEventListener("pageshow", () => {
    busy = false;
    root.classList.remove("busy");
  });
})();
