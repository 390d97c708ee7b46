package web_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The UI languages of the issue; English is the reference every other catalog must cover.
var uiLanguages = []string{"en", "pt-BR", "es", "fr", "de", "ru", "tr"}

// pluralNeeds lists the CLDR plural categories a language needs for whole numbers, beyond "other"
// (which every plural entry must have, and which the app falls back to). Russian needs three forms
// (1 файл, 2 файла, 5 файлов); the others distinguish one.
var pluralNeeds = map[string][]string{
	"en": {"one"}, "pt-BR": {"one"}, "es": {"one"}, "fr": {"one"}, "de": {"one"}, "tr": {"one"},
	"ru": {"one", "few", "many"},
}

var pluralCategories = []string{"zero", "one", "two", "few", "many", "other"}

var placeholder = regexp.MustCompile(`\{(\w+)\}`)

// entry is a catalog value: a string, or a plural object of CLDR categories.
type entry struct {
	text   string
	plural map[string]string
}

func (e entry) forms() []string {
	if e.plural == nil {
		return []string{e.text}
	}
	return slices.Collect(maps.Values(e.plural))
}

func loadCatalog(t *testing.T, lang string) map[string]entry {
	t.Helper()
	path := filepath.Join("static", "i18n", lang+".json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("catalog %s: %v (every UI language needs a catalog)", lang, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("catalog %s: not a JSON object of keys: %v", path, err)
	}
	out := map[string]entry{}
	var bad []string
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = entry{text: s}
			continue
		}
		var p map[string]string
		if json.Unmarshal(v, &p) == nil {
			for cat := range p {
				if !slices.Contains(pluralCategories, cat) {
					bad = append(bad, fmt.Sprintf("%s (plural category %q is not a CLDR category)", k, cat))
				}
			}
			out[k] = entry{plural: p}
			continue
		}
		bad = append(bad, fmt.Sprintf("%s (neither a string nor an object of plural forms)", k))
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		t.Errorf("catalog %s: malformed entries:\n  %s", lang, strings.Join(bad, "\n  "))
	}
	return out
}

func placeholders(forms ...string) map[string]bool {
	out := map[string]bool{}
	for _, f := range forms {
		for _, m := range placeholder.FindAllStringSubmatch(f, -1) {
			out[m[1]] = true
		}
	}
	return out
}

// TestCatalogsComplete: every catalog has every key English has, with no empty value, the same kind of
// entry (string or plural), the plural forms its language needs, and English's {placeholders}; no catalog
// has keys English lacks (a renamed key left behind).
func TestCatalogsComplete(t *testing.T) {
	en := loadCatalog(t, "en")
	if len(en) == 0 {
		t.Fatal("the English catalog is empty")
	}
	for _, lang := range uiLanguages {
		t.Run(lang, func(t *testing.T) {
			cat := en
			if lang != "en" {
				cat = loadCatalog(t, lang)
			}
			var missing, extra, empty, kind, forms, holes []string
			for _, k := range slices.Sorted(maps.Keys(en)) {
				want := en[k]
				got, ok := cat[k]
				if !ok {
					missing = append(missing, k)
					continue
				}
				if (want.plural == nil) != (got.plural == nil) {
					kind = append(kind, fmt.Sprintf("%s (English has a %s, %s a %s)", k, entryKind(want), lang, entryKind(got)))
					continue
				}
				for _, f := range got.forms() {
					if strings.TrimSpace(f) == "" {
						empty = append(empty, k)
						break
					}
				}
				if got.plural != nil {
					need := append([]string{"other"}, pluralNeeds[lang]...)
					for _, c := range need {
						if _, ok := got.plural[c]; !ok {
							forms = append(forms, fmt.Sprintf("%s (no %q form)", k, c))
						}
					}
				}
				// Each placeholder of English must be in every form of the translation, except {count}, which
				// a "one" form may spell out as a word; it must still be in "other" and in Russian's few/many.
				enHoles := placeholders(want.forms()...)
				for _, name := range slices.Sorted(maps.Keys(enHoles)) {
					check := got.forms()
					if name == "count" && got.plural != nil {
						check = nil
						for _, c := range []string{"other", "few", "many"} {
							if f, ok := got.plural[c]; ok {
								check = append(check, f)
							}
						}
					}
					for _, f := range check {
						if !placeholders(f)[name] {
							holes = append(holes, fmt.Sprintf("%s lacks {%s}: %q", k, name, f))
							break
						}
					}
				}
				for name := range placeholders(got.forms()...) {
					if !enHoles[name] {
						holes = append(holes, fmt.Sprintf("%s has {%s}, which English does not fill in", k, name))
					}
				}
			}
			for _, k := range slices.Sorted(maps.Keys(cat)) {
				if _, ok := en[k]; !ok {
					extra = append(extra, k)
				}
			}
			report := func(what string, keys []string) {
				if len(keys) > 0 {
					t.Errorf("catalog %s: %d %s:\n  %s", lang, len(keys), what, strings.Join(keys, "\n  "))
				}
			}
			report("keys that English has are missing", missing)
			report("keys English does not have (renamed or misspelt?)", extra)
			report("empty values", empty)
			report("entries of another kind than English's", kind)
			report("plural entries lack forms", forms)
			report("placeholder mismatches", holes)
		})
	}
}

func entryKind(e entry) string {
	if e.plural != nil {
		return "plural object"
	}
	return "string"
}

// TestCatalogKeysUsed: every key the pages and scripts name literally (data-i18n="…", data-i18n-attr,
// t('…')) is in the English catalog, so no screen shows a raw key.
func TestCatalogKeysUsed(t *testing.T) {
	en := loadCatalog(t, "en")
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`data-i18n="([^"]+)"`),
		regexp.MustCompile(`\bt\(\s*'([^'$]+)'`),
		regexp.MustCompile(`\bt\(\s*"([^"$]+)"`),
	}
	attr := regexp.MustCompile(`data-i18n-attr="([^"]+)"`)
	used := map[string][]string{}
	err := filepath.WalkDir("static", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".js" && ext != ".html" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src = stripComments(src)
		for _, re := range patterns {
			for _, m := range re.FindAllSubmatch(src, -1) {
				used[string(m[1])] = append(used[string(m[1])], path)
			}
		}
		for _, m := range attr.FindAllSubmatch(src, -1) {
			for _, pair := range strings.Fields(string(m[1])) {
				if _, key, ok := strings.Cut(pair, ":"); ok {
					used[key] = append(used[key], path)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(used) == 0 {
		t.Fatal("no data-i18n or t('…') found in web/static: has the app moved?")
	}
	var missing []string
	for _, k := range slices.Sorted(maps.Keys(used)) {
		if _, ok := en[k]; !ok {
			missing = append(missing, fmt.Sprintf("%s (used in %s)", k, strings.Join(slices.Compact(slices.Sorted(slices.Values(used[k]))), ", ")))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d keys used by the app are not in static/i18n/en.json:\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
}

// stripComments blanks out whole-line comments of JavaScript (// …, and the lines of /* … */ blocks that
// start with * or /*), where examples of keys are documentation, not use.
func stripComments(src []byte) []byte {
	lines := strings.Split(string(src), "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "//") || strings.HasPrefix(l, "/*") || strings.HasPrefix(l, "*") {
			lines[i] = ""
		}
	}
	return []byte(strings.Join(lines, "\n"))
}
