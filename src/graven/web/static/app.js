// Graven web UI: actions without reloads (fetch), live entries (EventSource), the diagram's explanations.
// Every page also works without this file: forms post and redirect, links are plain links.
"use strict";

(function () {
  document.documentElement.classList.add("js");
  const base = document.body.dataset.base || "";

  function post(form, submitter) {
    const data = new URLSearchParams(new FormData(form, submitter || undefined));
    return fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: data,
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          throw new Error(body.error || ("request failed with status " + response.status));
        }
        return body;
      });
    });
  }

  function say(where, text, kind, link) {
    if (!where) return;
    where.replaceChildren();
    const p = document.createElement("p");
    p.className = "alert " + (kind || "good");
    p.textContent = text + " ";
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      p.appendChild(a);
    }
    where.appendChild(p);
  }

  function fromHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function setCounters(counters) {
    if (!counters) return;
    Object.keys(counters).forEach(function (key) {
      const cell = document.querySelector('[data-counter="' + key + '"]');
      if (cell && cell.textContent !== String(counters[key])) {
        cell.textContent = String(counters[key]);
        cell.classList.remove("bump");
        void cell.offsetWidth;
        cell.classList.add("bump");
      }
    });
  }

  // Insert an entry at the top of a live list unless it is already there; true if inserted.
  function addEntry(list, item) {
    const index = Number(item.index);
    if (Number(list.dataset.after) < index) list.dataset.after = String(index);
    if (list.dataset.onlyVisitor && !item.visitor) return false;
    if (list.querySelector('[data-index="' + index + '"]')) return false;
    const node = fromHtml(item.html);
    node.classList.add("fresh");
    let before = null;
    for (const child of list.children) {
      if (Number(child.dataset.index) < index) { before = child; break; }
    }
    list.insertBefore(node, before);
    const empty = document.getElementById("empty-log");
    if (empty) empty.hidden = true;
    return true;
  }

  // Try it yourself: who is at the keyboard.
  document.querySelectorAll("form.js-persona").forEach(function (form) {
    form.addEventListener("change", function () {
      post(form).then(function (body) {
        document.getElementById("persona").innerHTML = body.html;
        say(document.getElementById("status"), "You are now " + body.name + ".", "good");
      }).catch(function (error) { say(document.getElementById("status"), error.message, "bad"); });
    });
  });

  // Try it yourself: every attempt.
  document.querySelectorAll("form.js-attempt").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const buttons = form.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      post(form, event.submitter).then(function (body) {
        const kind = body.outcome === "success" ? "good" : "bad";
        say(document.getElementById("status"), body.message, kind);
        const list = document.getElementById("try-log");
        body.entries.slice().reverse().forEach(function (item) { addEntry(list, item); });
        setCounters(body.counters);
        document.getElementById("state").innerHTML = body.state_html;
        document.getElementById("persona").innerHTML = body.persona_html;
        form.querySelectorAll('input[type="password"]').forEach(function (input) { input.value = ""; });
      }).catch(function (error) {
        say(document.getElementById("status"), error.message, "bad");
      }).finally(function () {
        buttons.forEach(function (b) { b.disabled = false; });
      });
    });
  });

  document.querySelectorAll("form.js-reset").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      post(form).then(function () { window.location.reload(); })
        .catch(function (error) { say(document.getElementById("status"), error.message, "bad"); });
    });
  });

  // Console and entry page: verify the whole log; tamper with it (demo).
  document.querySelectorAll("form.js-verify").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const where = document.getElementById("verify-result");
      say(where, "Verifying every entry, the tree and every checkpoint…", "good");
      post(form).then(function (body) {
        if (body.ok) {
          say(where, "Intact. " + body.message, "good");
        } else {
          say(where, "Tampering found: " + body.kind + " at entry #" + body.first_bad_index + ". " + body.message, "bad",
            body.entry_url ? { href: body.entry_url, text: "Open entry #" + body.first_bad_index } : null);
        }
      }).catch(function (error) { say(where, error.message, "bad"); });
    });
  });

  document.querySelectorAll("form.js-tamper").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const where = document.getElementById("verify-result");
      post(form).then(function (body) {
        if (form.querySelector('input[name="index"]')) {
          window.location.assign(body.entry_url);
          return;
        }
        say(where, body.message + " Now verify the log.", "bad", { href: body.entry_url, text: "Open entry #" + body.index });
      }).catch(function (error) { say(where, error.message, "bad"); });
    });
  });

  // Live lists: new entries as they are recorded.
  document.querySelectorAll("ol.js-live").forEach(function (list) {
    if (!window.EventSource) return;
    const state = document.getElementById("live-state");
    const url = base + "/events?after=" + encodeURIComponent(list.dataset.after) +
      "&generation=" + encodeURIComponent(list.dataset.generation);
    const source = new EventSource(url);
    source.addEventListener("open", function () {
      if (state) { state.textContent = "live"; state.classList.add("on"); }
    });
    source.addEventListener("error", function () {
      if (state) { state.textContent = "reconnecting…"; state.classList.remove("on"); }
    });
    source.addEventListener("entry", function (event) {
      const item = JSON.parse(event.data);
      addEntry(list, item);
      if (item.counters) setCounters(item.counters);
    });
    source.addEventListener("reset", function () {
      source.close();
      window.location.reload();
    });
  });

  // How it works: explain the part under the pointer, the finger or the keyboard focus.
  const explain = document.getElementById("explain");
  if (explain) {
    const show = function (node) {
      const key = node.dataset.part;
      const part = document.getElementById("part-" + key);
      if (!part) return;
      document.querySelectorAll(".node.active, .part.active").forEach(function (n) { n.classList.remove("active"); });
      node.classList.add("active");
      part.classList.add("active");
      explain.replaceChildren();
      const title = document.createElement("h3");
      title.textContent = part.querySelector("dt").textContent;
      explain.appendChild(title);
      part.querySelectorAll("dd p").forEach(function (p) { explain.appendChild(p.cloneNode(true)); });
    };
    document.querySelectorAll(".node").forEach(function (node) {
      ["mouseenter", "focus", "click"].forEach(function (kind) {
        node.addEventListener(kind, function () { show(node); });
      });
      node.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); show(node); }
      });
    });
  }
})();
