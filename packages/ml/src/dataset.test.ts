import assert from "node:assert/strict";
import { test } from "node:test";
import { columnChoiceOf, selectDataset } from "./dataset.js";
import { JobInputError } from "./errors.js";
import { parseCsv, parseNdjson, serializeTable } from "./table.js";

function inputError(pattern: RegExp) {
  return (error: unknown) => error instanceof JobInputError && pattern.test(error.message);
}

test("CSV: header row, numeric columns become features, label read separately", () => {
  const table = parseCsv('a,b,name,label\n1,2.5,"x, y",0\n-3,1e2,z,1\n');
  const dataset = selectDataset(table, columnChoiceOf({}, "required"));
  assert.deepEqual(dataset.featureColumns, ["a", "b"]);
  assert.deepEqual(Array.from(dataset.features), [1, 2.5, -3, 100]);
  assert.deepEqual(Array.from(dataset.labels ?? []), [0, 1]);
  assert.equal(dataset.rowCount, 2);
});

test("NDJSON: keys in order of appearance, arrays of numbers are vector features, booleans are 0/1", () => {
  const table = parseNdjson(
    '{"x":[1,2],"flag":true,"label":2}\n\n{"flag":false,"x":[3,4],"label":0,"note":"hi"}\n',
  );
  assert.deepEqual(table.columns, ["x", "flag", "label", "note"]);
  const dataset = selectDataset(table, columnChoiceOf({ feature_columns: "x,flag" }, "required"));
  assert.deepEqual(dataset.featureNames, ["x[0]", "x[1]", "flag"]);
  assert.deepEqual(Array.from(dataset.features), [1, 2, 1, 3, 4, 0]);
  assert.deepEqual(Array.from(dataset.labels ?? []), [2, 0]);
});

test("hyperparameters choose label and feature columns", () => {
  const table = parseCsv("a,b,c,y\n1,2,3,4\n5,6,7,8\n");
  const dataset = selectDataset(
    table,
    columnChoiceOf({ label_column: "y", feature_columns: "c, a" }, "required"),
  );
  assert.deepEqual(Array.from(dataset.features), [3, 1, 7, 5]);
  assert.deepEqual(Array.from(dataset.labels ?? []), [4, 8]);
  const unlabelled = selectDataset(table, columnChoiceOf({}, "optional"));
  assert.equal(unlabelled.labels, undefined);
  assert.deepEqual(unlabelled.featureColumns, ["a", "b", "c", "y"]);
});

test("bad data is refused with the column and row named", () => {
  assert.throws(
    () =>
      selectDataset(
        parseCsv("a,b,label\n1,2,0\n3,,1\n"),
        columnChoiceOf({ feature_columns: "a,b" }, "required"),
      ),
    inputError(/feature column "b", row 2: is missing/),
  );
  assert.throws(
    () =>
      selectDataset(
        parseCsv("a,b,label\n1,2,0\n3,oops,1\n"),
        columnChoiceOf({ feature_columns: "a,b" }, "required"),
      ),
    inputError(/feature column "b", row 2: "oops" is not a number/),
  );
  assert.throws(
    () => selectDataset(parseCsv("a,b\n1,2\n"), columnChoiceOf({}, "required")),
    inputError(/label column "label" is not in the dataset \(set hyperparameters.label_column\)/),
  );
  assert.throws(
    () => selectDataset(parseCsv("a,label\n1,cat\n"), columnChoiceOf({}, "required")),
    inputError(/label column "label", row 1: "cat" is not a number/),
  );
  assert.throws(
    () => selectDataset(parseCsv("name,label\nx,1\n"), columnChoiceOf({}, "required")),
    inputError(/no numeric feature column/),
  );
  assert.throws(
    () => selectDataset(parseCsv("a,label\n"), columnChoiceOf({}, "required")),
    inputError(/no rows/),
  );
  assert.throws(
    () => parseCsv("a,b\n1,2\n3\n"),
    inputError(/CSV dataset, line 3: record inconsistent fields length/),
  );
  assert.throws(() => parseCsv("a,a\n1,2\n"), inputError(/CSV header "a" repeats/));
  assert.throws(() => parseNdjson('{"a":1}\n[1]\n'), inputError(/line 2: expected a JSON object/));
  assert.throws(() => parseNdjson('{"a":1}\n{oops\n'), inputError(/line 2: not valid JSON/));
  assert.throws(
    () =>
      selectDataset(
        parseCsv("a,label\n1,0\n"),
        columnChoiceOf({ learning_rate: "x", feature_columns: "a,a" }, "required"),
      ),
    inputError(/hyperparameters.feature_columns names a twice/),
  );
});

test("tables serialize back in either format", () => {
  const csv = parseCsv('a,b\n1,"he said ""hi"""\n,x\n');
  assert.equal(serializeTable(csv), 'a,b\n1,"he said ""hi"""\n,x\n');
  assert.equal(
    serializeTable(csv, "ndjson"),
    '{"a":"1","b":"he said \\"hi\\""}\n{"a":"","b":"x"}\n',
  );
  const ndjson = parseNdjson('{"v":[1,2],"s":"a,b"}\n');
  assert.equal(serializeTable(ndjson), '{"v":[1,2],"s":"a,b"}\n');
  assert.equal(serializeTable(ndjson, "csv"), 'v,s\n"[1,2]","a,b"\n');
});
